"""What the command line's tests share besides fixtures."""


def stylize(images, output, *args) -> int:
    """``nst stylize PHOTO PAINTING -o OUTPUT ARGS...``'s exit code (``images``: the fixture's pair)."""
    from nst_batch.cli.main import main

    return main(["stylize", str(images[0]), str(images[1]), "-o", str(output), *args])
