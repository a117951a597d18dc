"""The bitstream: the .bbc container, entropy coding, payload streams, the coding loop
that runs a frozen model over the blocks (in one process or several in lockstep), and
the encoder's choices (effort). numpy and constriction only, on top of bbcodec.model."""
