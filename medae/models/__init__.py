"""The autoencoder family: one small module per model, each with a typed config."""
