"""Training data: data directories (dataset.yaml + spec + impressions), generators and loaders."""
