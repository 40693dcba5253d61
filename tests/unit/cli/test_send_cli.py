"""`esb send`: the body from a file or stdin, its content type from --content-type, the extension or the body."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from esb.cli.main import esb
from esb.cli.send import content_type_for, sniff

ROUTE = "name: r\nsource: {exchange: x, binding_key: k}\nsteps:\n  - log: {message: seen}\n"


@pytest.fixture
def sent(monkeypatch) -> list[tuple]:
    """What `esb send` published: (exchange, key, body, content type, headers, message id)."""
    published: list[tuple] = []
    monkeypatch.setattr("esb.cli.send.confirmed_publish", lambda broker: lambda *args: published.append(args))
    return published


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.yaml").write_text(ROUTE)
    return tmp_path


def send(root: Path, *args: str, stdin: bytes | None = None):
    return CliRunner().invoke(esb, ["--root", str(root), "send", *args, "--broker", "memory://", "--id", "M-1"],
                              input=stdin, catch_exceptions=False)


def test_a_dash_reads_the_body_from_stdin_and_sniffs_json(project, sent):
    result = send(project, "r", "-", stdin=b'{"claim_id": "C-1", "amount": 10.05}')
    assert result.exit_code == 0, result.output
    assert result.stdout == "M-1\n"
    assert sent == [("x", "k", b'{"claim_id": "C-1", "amount": 10.05}', "application/json", {}, "M-1")]


def test_stdin_xml_and_an_mt940_file_with_block_headers_are_sniffed_as_xml_and_text(project, sent):
    send(project, "r", "-", stdin=b'\n<?xml version="1.0"?><Document/>')
    send(project, "r", "-", stdin=b"{1:F01COBADEFFAXXX0000000000}{4:\r\n:20:940S240610\r\n-}")
    assert [s[3] for s in sent] == ["application/xml", "text/plain"]


def test_content_type_option_wins_over_the_extension_and_the_body(project, sent, tmp_path):
    (tmp_path / "claim.json").write_text('{"a": 1}')
    send(project, "r", str(tmp_path / "claim.json"), "--content-type", "text")
    send(project, "--exchange", "e", "--key", "k2", "-", "--content-type", "application/vnd.acme+json", stdin=b"{}")
    assert [(s[0], s[1], s[3]) for s in sent] == [("x", "k", "text/plain"), ("e", "k2", "application/vnd.acme+json")]


def test_a_file_keeps_its_extension_s_content_type():
    assert content_type_for("a.XML", b"{}") == "application/xml"
    assert content_type_for("a.json", b"<x/>") == "application/json"
    assert content_type_for("statement.sta", b":20:STARTUMS\r\n") == "text/plain"
    assert sniff(b"\xef\xbb\xbf [1, 2]") == "application/json"
    assert sniff(b"{not json") == "text/plain"


def test_a_missing_file_is_still_refused(project, sent):
    result = send(project, "r", str(project / "nope.json"))
    assert result.exit_code == 2 and "no such file" in result.stderr
    assert sent == []
