"""Checks that the image adds nothing to its base but the app, its venv and the service user.

  docker save IMAGE -o image.tar && added_files.py image.tar BASE_LAYER_COUNT

Lists every path in the layers after the base image's and exits 1 naming any path outside what
the Dockerfile's final stage means to add.
"""

import json
import re
import sys
import tarfile

ALLOWED = re.compile(
    r"opt/|opt/microshop/.*"  # the venv, with microshop in it
    r"|data/"  # MICROSHOP_DATA_DIR, owned by the service user
    r"|etc/|etc/(passwd|group|shadow|gshadow)-?|etc/\.pwd\.lock"  # the service user, its group
)


def added_paths(image: tarfile.TarFile, base_layer_count: int) -> list[str]:
    manifest = image.extractfile("manifest.json")
    assert manifest is not None
    layers = json.load(manifest)[0]["Layers"][base_layer_count:]
    paths = []
    for layer in layers:
        with tarfile.open(fileobj=image.extractfile(layer)) as layer_archive:
            paths += [member.name + ("/" if member.isdir() else "") for member in layer_archive]
    return paths


def main() -> int:
    with tarfile.open(sys.argv[1]) as image:
        paths = added_paths(image, int(sys.argv[2]))
    unexpected = sorted(path for path in paths if not ALLOWED.fullmatch(path))
    print(f"{len(paths)} paths added to the base image, {len(unexpected)} unexpected")
    for path in unexpected[:50]:
        print(f"  unexpected: {path}")
    return 1 if unexpected or not paths else 0


if __name__ == "__main__":
    sys.exit(main())
