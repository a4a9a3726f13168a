"""The parity certificate in the pipeline: of a staged output before it is published (``transfer(verify=...)``,
the flow's verify step), and of a finished output, whoever wrote it (``warmstart verify``).

A staged output is certified after the copy and before its state file and manifest are written: a certificate
that fails (with ``verify`` ``fail``) raises :class:`CertificateError` and nothing is published; with ``warn`` the
output is published and the certificate reported. Either way the certificate goes into the manifest (``verify``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CertificateError, UsageError
from ..planning import Plan
from ..storage import MANIFEST, Location, resolve
from ..verification import Certificate, VerifyMode, certify, output_files, verify_mode
from .inputs import Opened, read_rules
from .planner import plan_transfer

__all__ = ["certificate_of", "verify_output", "certify_staged", "PreferringReader", "check_verdict"]


def certificate_of(opened: Opened, target: Any, output: str | Location, storage_options: dict[str, Any] | None = None,
                   finished: bool = False, probes: int | None = None, seed: int | None = None) -> Certificate:
    """The certificate of ``output``, a transfer of ``opened.plan`` from its readers into ``target`` (``probes``,
    ``seed``: instead of the rules' ``verify:`` values)."""
    readers = dict(opened.readers)
    if not readers:
        raise UsageError("a certificate reads the sources: the plan's sources were given as tables, not as files")
    with output_files(output, storage_options, finished=finished) as files:
        return certify(opened.plan, readers, target, files, storage_options, probes, seed)


def check_verdict(certificate: Certificate, mode: VerifyMode) -> None:
    """Raise :class:`CertificateError` when ``certificate`` did not pass and ``mode`` is ``fail``."""
    if mode == "fail" and not certificate.passed:
        raise CertificateError(certificate.failure_message(), certificate)


def verify_output(source: Any, target: Any, output: str, rules: Any = None,
                  storage_options: dict[str, Any] | None = None, sources: Mapping[str, Any] | None = None,
                  probes: int | None = None, seed: int | None = None) -> Certificate:
    """The certificate of a finished ``output`` (a directory, a Keras weights file or a checkpoint prefix; written
    by warmstart or by another tool) as a transfer of ``source`` into ``target`` under ``rules``: the plan made now
    says which target variable comes from which source variable. Raises :class:`PlanError` when that plan fails
    (nothing to certify against), :class:`UsageError` for a ``verify:`` declaration that cannot run."""
    from ..errors import PlanError

    rules_model, rules_input = read_rules(rules, storage_options)
    opened = plan_transfer(source, target, rules_model, "auto", storage_options, sources, rules_input)
    if not opened.plan.ok:
        raise PlanError(opened.plan.failure_message(), opened.plan)
    return certificate_of(opened, target, output, storage_options, True, probes, seed)


def certify_staged(plan: Plan, readers: Mapping[str, Any], target: Any, staging: str, mode: Any,
                   storage_options: dict[str, Any] | None = None, output: str | None = None) -> Certificate:
    """The certificate of a staged local output (the flow's staging directory, finished there but not published
    yet at ``output``, the URL the certificate names), written into its manifest (``verify``); raises
    :class:`CertificateError` when it fails and ``mode`` is ``fail`` (the run then publishes nothing)."""
    mode = verify_mode(mode)
    certificate = certificate_of(Opened(plan, readers), target, resolve(staging), storage_options)
    if output is not None:
        certificate = replace(certificate, output=resolve(output, storage_options).url)
    path = Path(staging) / MANIFEST
    doc = json.loads(path.read_text())
    doc["verify"] = certificate.to_json()
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    check_verdict(certificate, mode)
    return certificate


class PreferringReader:
    """A source's reader that reads each tensor from the first of ``readers`` holding it: a cache's partial copy
    (what the transfer read), then the source itself (what a comparison needs beyond the plan, a TF1 graph's other
    variables). Its records, URL and place are the last reader's (the source's)."""

    def __init__(self, *readers: Any):
        self.readers = readers
        self.source = readers[-1]
        self.url, self.records = self.source.url, self.source.records

    def __getattr__(self, name: str) -> Any:  # prefix, config: the source's
        return getattr(self.source, name)

    def read(self, key: str) -> Any:
        reader = next((r for r in self.readers if key in r.records), self.source)
        return reader.read(key)
