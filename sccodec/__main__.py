"""``python -m sccodec …`` (and ``torchrun -m sccodec train …``): the same CLI as ``sccodec``."""
from sccodec.cli import main

main(prog_name="sccodec")
