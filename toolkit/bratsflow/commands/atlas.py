"""`bratsflow atlas`: the atlases, and fetching one into the user cache."""

from __future__ import annotations

import argparse


def add_commands(commands) -> None:
    atlas = commands.add_parser("atlas", help="list atlases or fetch one into the user cache")
    atlas.add_argument("action", choices=["list", "fetch"])
    atlas.add_argument("name", nargs="?", default="sri24")
    atlas.add_argument("--url", help="download from this address instead of the registered one")
    atlas.add_argument("--sha256", help="expected SHA-256 of the download (required when none is pinned)")
    atlas.add_argument("--force", action="store_true", help="replace a cached file that does not match")
    atlas.set_defaults(func=run_atlas)


def run_atlas(args: argparse.Namespace) -> None:
    from .. import atlas

    if args.action == "fetch":
        print(atlas.fetch(args.name, url=args.url, sha256=args.sha256, force=args.force))
    else:
        for name in atlas.BUILTIN:
            print(f"{name}\tbuilt in")
        for name, entry in atlas.DOWNLOADS.items():
            path = atlas.cached_path(name)
            print(f"{name}\t{'cached at ' + str(path) if path.is_file() else 'not fetched'}\t{entry.description}")
