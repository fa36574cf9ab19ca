"""The corpus: a directory searched recursively for video files, a text file listing paths, or one video."""
from __future__ import annotations

import os

from ..errors import InputError

VIDEO_EXTENSIONS = frozenset({".3gp", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg",
                              ".mts", ".ogv", ".ts", ".webm", ".wmv"})


def is_video_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def find_videos(source: str) -> list[str]:
    """Absolute video paths, each once, in a stable order (sorted for a directory, as listed for a list file).

    Paths are absolute so that a rerun from another working directory still recognises what is done; relative
    entries of a list file are taken relative to the current directory, as a shell would.
    """
    if os.path.isdir(source):
        found = [os.path.join(root, name) for root, dirs, names in os.walk(source)
                 for name in names if is_video_name(name)]
        paths = sorted(found)
    elif os.path.isfile(source):
        paths = [source] if is_video_name(source) else read_list(source)
    else:
        raise InputError(f"{source}: no such directory or file")
    unique = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    if not unique:
        raise InputError(f"{source}: no videos found (extensions: {' '.join(sorted(VIDEO_EXTENSIONS))})")
    return unique


def read_list(path: str) -> list[str]:
    """One path per line; blank lines and lines starting with '#' are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the list of videos ({e})") from e
    return [line for line in lines if line and not line.startswith("#")]
