"""The model of note 20 (nn.Linear) and the LightningModule that holds its math."""
