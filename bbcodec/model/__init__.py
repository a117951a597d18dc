"""The frozen model: integer arithmetic, the networks of a weights file (the
auto-encoder, the grouped scales, the post-loop filter), their file layout, the block
geometry they see and the quality scale. numpy only: never torch, Pillow or the CLI."""
