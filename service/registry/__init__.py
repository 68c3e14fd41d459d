"""The registry wing: which versions of which models are served, and how requests reach them.

- model_config.py: the models and their version policies (IMGCLF_MODEL_NAME, or TF Serving's models.config).
- model_set.py: one registry per configured model, rebuilt when the config changes.
- model_registry.py: one model's versions: poll, load, warm up, admit, swap atomically, drain, unload.
- gate.py and verdicts.py: the admission policy between "warmed up" and "takes traffic" (the quality gate
  against a reference set, and the refusals and rollbacks recorded beside the versions).
- batching.py: the batcher in front of each served version (size and delay bounds, a bounded queue).

It imports the runtimes' contract (service/backends/base.py) and never the transports or the core.
"""
