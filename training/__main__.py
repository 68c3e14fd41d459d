"""`python -m training` runs the training job, like `imgclf train`."""

from training.cli import main

main()
