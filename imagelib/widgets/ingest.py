"""``IngestWidget``: pick a file (a server-side path, or an upload from the browser), see its validation
report as a table, ingest it as a version — with a progress bar over the steps and coded errors in place.

Progress is counted in steps (validate → ingest → recorded); the byte/row bars of ``imagelib.ingest``
write to the kernel's stderr and are not mirrored here.
"""

from __future__ import annotations

import contextlib
import html
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import ipywidgets as w

from imagelib.context import Library
from imagelib.errors import ImagelibError
from imagelib.widgets.deepzoom import error_html

STEPS = ("validate", "ingest", "done")


def _cell(value: Any) -> str:
    return html.escape(str(value or ""))


def report_html(report: dict[str, Any]) -> str:
    """A validation report as HTML: a verdict line, the errors and warnings table, the file's facts."""
    verdict = (
        "<b style='color:#080'>valid</b>" if report.get("valid") else "<b style='color:#b00'>invalid</b>"
    )
    issues = [("error", i) for i in report.get("errors", [])] + [
        ("warning", i) for i in report.get("warnings", [])
    ]
    rows = "".join(
        f"<tr><td>{kind}</td><td><code>{_cell(i.get('code'))}</code></td>"
        f"<td>{_cell(i.get('field'))}</td><td>{_cell(i.get('message'))}</td></tr>"
        for kind, i in issues
    )
    table = (
        "<table class='imagelib-report'><thead><tr><th>severity</th><th>code</th><th>field</th>"
        f"<th>message</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else "<p>no errors, no warnings</p>"
    )
    info = report.get("info") or {}
    facts = ", ".join(
        f"{k} <code>{html.escape(str(info[k]))}</code>"
        for k in ("format", "shape", "dtype", "crs")
        if k in info
    )
    return f"<div>{verdict} — {facts}</div>{table}"


class IngestWidget:
    """Path or upload → validation report → version (``.widget``; ``.result`` holds the ingest summary)."""

    def __init__(
        self,
        namespace: str = "",
        dataset: str = "",
        *,
        path: str = "",
        rules: Any = None,
        lib: Library | None = None,
    ) -> None:
        self.lib, self.rules = lib, rules
        self.report: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.path = w.Text(value=path, description="path", placeholder="/path/to/file.tif[#/dataset]")
        self.upload = w.FileUpload(description="upload", multiple=False)
        self.namespace = w.Text(value=namespace, description="namespace")
        self.dataset = w.Text(value=dataset, description="dataset")
        self.validate_button = w.Button(description="validate", icon="check")
        self.ingest_button = w.Button(description="ingest", icon="upload", button_style="primary")
        self.validate_button.on_click(lambda _: self._background(self.validate))
        self.ingest_button.on_click(lambda _: self._background(self.ingest))
        self.progress = w.IntProgress(min=0, max=len(STEPS), value=0, description="progress")
        self.status = w.HTML()
        self.table = w.HTML()
        self.widget = w.VBox(
            [
                w.HBox([self.path, self.upload]),
                w.HBox([self.namespace, self.dataset]),
                w.HBox([self.validate_button, self.ingest_button, self.progress]),
                self.status,
                self.table,
            ]
        )

    def _background(self, action: Any) -> None:
        # the buttons run in a thread so the kernel keeps answering comm messages (progress updates)
        def run() -> None:
            with contextlib.suppress(Exception):  # already shown in the status line
                action()

        threading.Thread(target=run, daemon=True).start()

    @contextlib.contextmanager
    def _source(self) -> Any:
        """The file to read: the uploaded one (copied to a temporary folder) or the path."""
        files = self.upload.value
        if not files:
            if not self.path.value.strip():
                raise ImagelibError("give a path or upload a file", code="USAGE", field="path")
            yield self.path.value.strip()
            return
        upload = files[0]
        folder = Path(tempfile.mkdtemp(prefix="imagelib-upload-"))
        try:
            target = folder / Path(upload["name"]).name  # a bare file name: no folders from the browser
            target.write_bytes(bytes(upload["content"]))
            yield str(target)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _step(self, value: int, style: str = "info") -> None:
        self.progress.value, self.progress.bar_style = value, style

    def validate(self) -> dict[str, Any] | None:
        """Validate the chosen file and show the report; None (and the coded error) when it cannot run."""
        self._step(0)
        try:
            import imagelib

            with self._source() as source:
                self.report = imagelib.validate(source, self.rules)
        except Exception as exc:
            return self._fail(exc)
        self.table.value = report_html(self.report)
        self.status.value = ""
        self._step(1, "success" if self.report["valid"] else "danger")
        return self.report

    def ingest(self) -> dict[str, Any] | None:
        """Validate, then (when valid) ingest into ``namespace/dataset``; returns the summary."""
        self.set_busy(True)
        try:
            report = self.validate()
            if report is None or not report["valid"]:
                return None
            self._step(2)
            import imagelib

            with self._source() as source:
                self.result = imagelib.ingest(
                    source, self.namespace.value, self.dataset.value, rules=self.rules, lib=self.lib
                )
        except Exception as exc:
            if getattr(exc, "report", None):  # invalid content found while writing (ValidationFailed)
                self.table.value = report_html(exc.report)  # type: ignore[attr-defined]
            return self._fail(exc)
        finally:
            self.set_busy(False)
        self._step(3, "success")
        self.status.value = f"version <code>{self.result['version']}</code>" + (
            " (already stored)" if self.result.get("deduplicated") else ""
        )
        return self.result

    def set_busy(self, busy: bool) -> None:
        """Disable the buttons while a step runs."""
        self.validate_button.disabled = self.ingest_button.disabled = busy

    def _fail(self, exc: BaseException) -> None:
        self.status.value = error_html(exc)
        self.progress.bar_style = "danger"
        return None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
