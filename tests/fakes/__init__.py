"""Loopback fakes of the Kaggle API and the Hugging Face Hub (stdlib http.server, 127.0.0.1 only)."""
