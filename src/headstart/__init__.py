"""headstart: train an accurate classifier in a fraction of the time, by reusing a
pre-trained model, and prove the time saved."""
__version__ = "0.1.0"
