"""The drop folder (RAT-6): usage files put in ``RATING_DROP_DIR`` are imported by themselves.

Each poll lists the folder; a file is taken once it is stable (same size and
modification time on two consecutive polls, so a file still being copied in is
left alone), by renaming it into ``processing/``. The rename is atomic, so when
several replicas watch the same folder exactly one takes each file. After the
import the file moves to ``processed/`` (completed, or already imported before:
the checksum makes a second drop of the same file a no-op) or ``failed/`` (failed
loudly), with a ``<name>.result.json`` beside it saying what happened. Files left
in ``processing/`` by a crash go back to the folder at start and resume where
their import stopped. Hidden files and ``*.part`` / ``*.tmp`` are ignored, so
writers can upload under a temporary name and rename when done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Final

from services.common.errors import ReckonError
from services.rating.service_layer.imports import ImportResult, UsageImporter
from services.rating.service_layer.usage_formats import ImportOptions, UsageFormat

log = logging.getLogger(__name__)

_IGNORED_SUFFIXES: Final = (".part", ".tmp", ".result.json")
_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson")


class DropFolder:
    def __init__(
        self,
        root: Path,
        importer: UsageImporter,
        *,
        preset: str = "reckon",
        poll_seconds: float = 2.0,
        options_for: Callable[[Path], ImportOptions] | None = None,
    ) -> None:
        self.root = root
        self.processing = root / "processing"
        self.processed = root / "processed"
        self.failed = root / "failed"
        self._importer = importer
        self._preset = preset
        self._poll = poll_seconds
        self._options_for = options_for or self._default_options
        self._seen: dict[str, tuple[int, int]] = {}
        self._recovered = False

    def _default_options(self, path: Path) -> ImportOptions:
        if path.name.lower().endswith(_JSONL_SUFFIXES):
            return ImportOptions(format=UsageFormat.JSONL, preset="reckon")
        return ImportOptions(format=UsageFormat.CSV, preset=self._preset)

    def prepare(self) -> None:
        for folder in (self.root, self.processing, self.processed, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        if not self._recovered:
            # Interrupted imports: back to the folder; the import resumes by checksum.
            for leftover in self.processing.iterdir():
                with suppress(FileNotFoundError):
                    os.replace(leftover, self.root / leftover.name)
            self._recovered = True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.scan_once)
            except Exception:
                log.exception("drop folder scan failed; retrying")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._poll)

    def scan_once(self, *, require_stable: bool = True) -> list[ImportResult]:
        """Import every stable file once; returns the outcomes (for tests and logs)."""
        self.prepare()
        results: list[ImportResult] = []
        current: dict[str, tuple[int, int]] = {}
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if name.startswith((".", "~")) or name.endswith(_IGNORED_SUFFIXES):
                continue
            try:
                if not entry.is_file():
                    continue
                status = entry.stat()
            except FileNotFoundError:
                continue
            signature = (status.st_size, status.st_mtime_ns)
            current[name] = signature
            if require_stable and self._seen.get(name) != signature:
                continue  # new or still growing: look again next poll
            result = self._take(entry)
            if result is not None:
                results.append(result)
            current.pop(name, None)
        self._seen = current
        return results

    def _take(self, entry: Path) -> ImportResult | None:
        working = self.processing / entry.name
        try:
            os.replace(entry, working)
        except FileNotFoundError:
            return None  # another replica took it
        log.info("drop folder: importing %s", entry.name)
        try:
            result = self._importer.import_path(working, entry.name, self._options_for(working))
        except ReckonError as exc:
            if exc.reason == "NO_CATALOG":
                # Nothing to rate with yet: leave the file for a later poll.
                os.replace(working, entry)
                log.warning("drop folder: %s waits for a catalog", entry.name)
                return None
            self._settle(working, self.failed, {"error": exc.reason, "message": exc.message})
            log.error("drop folder: %s refused: %s", entry.name, exc.message)
            return None
        except Exception as exc:
            self._settle(working, self.failed, {"error": "INTERNAL", "message": str(exc)[:500]})
            log.exception("drop folder: %s could not be imported", entry.name)
            return None
        summary = {
            "file_id": result.file.file_id,
            "status": str(result.file.status),
            "duplicate_of": result.duplicate_of,
            "records": result.file.records,
            "rated": result.file.rated,
            "rejected": result.file.rejected,
            "skipped": result.file.skipped,
            "rejects_by_reason": result.file.reason_counts(),
            "failure_message": result.file.failure_message,
        }
        self._settle(working, self.failed if result.failed else self.processed, summary)
        return result

    def _settle(self, working: Path, folder: Path, summary: dict[str, object]) -> None:
        target = folder / working.name
        counter = 1
        while target.exists():
            target = folder / f"{working.stem}.{counter}{working.suffix}"
            counter += 1
        os.replace(working, target)
        target.with_name(target.name + ".result.json").write_text(
            json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8"
        )
