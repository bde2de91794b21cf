"""Training: typed config, Lightning DataModule and LightningModule, and `fit` that writes a run."""
