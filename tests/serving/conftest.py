"""One served shop for the model-server modules of this package (test_serving, the lifecycle
tests): building it is most of their time. The fuzz module builds its own."""

import pytest

from tests.serving.serving_world import served_shop


@pytest.fixture(scope="package")
def shop(tmp_path_factory):
    with served_shop(tmp_path_factory.mktemp("online")) as world:
        yield world
