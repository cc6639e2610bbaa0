"""The three contracts shared by training and serving: feature spec + transform, manifest, fusion."""
