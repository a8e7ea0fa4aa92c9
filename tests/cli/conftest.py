import pytest

from tests.flows.helpers import save
from tests.synthetic import painting_like, photo_like


@pytest.fixture
def images(tmp_path):
    """A small photo (PNG) and painting (JPEG) on disk, for the command line's tests."""
    return save(photo_like(48, 64), tmp_path / "photo.png"), save(painting_like(40, 40), tmp_path / "paint.jpg")
