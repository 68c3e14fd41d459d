"""The real-hands recipe as one piece: CGI hands cut out and composited into scenes, and the real-like check.

- `backgrounds`: scenes without hands (packaged photos, a held-out share, procedural rooms)
- `composite`: cut a hand out of its white backdrop and place it in a scene, as a webcam would see it
- `scenes`: render the scene pools once per run and stream them to training as tf.data
- `scenes_data`: the recipe's train and validation pipelines (`make_scene_datasets`)
- `reallike`: the real-like check, unseen hands in unseen scenes at webcam sizes

Nothing is imported here: each module is imported by its own name (training/ has no import loop).
"""
