"""The float networks in torch, for training (bbcodec.train) and for measuring what
exactness costs; the coding path never imports this package."""
