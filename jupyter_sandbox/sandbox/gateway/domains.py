"""Domain names in a sandbox's network policy: parsing, normalising and matching.

Everything here judges text that a notebook (or the sandbox, through a proxy request) chose, so it is
strict: a name is lower-cased, its trailing dot dropped and each label turned into its ASCII form
(IDNA, UTS #46) before any comparison; a label that is not a valid DNS label, a label that mixes
scripts (Latin with Cyrillic, say) and a label written wholly in letters that look like Latin ones
(Cyrillic letters spelling "paypal") are refused, so a policy never holds a look-alike of the name the user meant.
`*.example.org` matches the subdomains of example.org, never example.org itself and never
`evilexample.org` or `example.org.evil`; `*` alone, and wildcards over a public suffix of one label
(`*.com`), are refused.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence

import idna

MAX_NAME = 253
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Letters of other scripts drawn like Latin ones: a label made only of these (and digits, hyphens)
# reads as a Latin word it is not.
_LOOKS_LATIN = set("аеорсухіјѕԁһӏԛԝкмнтвгпиьαεορτυνικχωγδ")


class DomainError(ValueError):
    """A name that cannot go into a policy; the message says why."""


def _script(char: str) -> str:
    """The script of one character, by the first word of its Unicode name (LATIN, CYRILLIC, ...);
    digits and the hyphen belong to every script."""
    if char.isdigit() or char in "-_":
        return "COMMON"
    try:
        name = unicodedata.name(char)
    except ValueError:
        return "UNKNOWN"
    first = name.split(" ", 1)[0]
    if first in ("CJK", "HIRAGANA", "KATAKANA"):
        return "HAN"  # Japanese mixes these legitimately
    return first


def _check_unicode_label(label: str, original: str) -> None:
    scripts = {_script(c) for c in label} - {"COMMON"}
    if "UNKNOWN" in scripts:
        raise DomainError(f"{original!r} has a character that is not a letter of any script")
    if len(scripts) > 1:
        raise DomainError(
            f"{original!r} mixes scripts ({', '.join(sorted(s.title() for s in scripts))}) in the label {label!r}, "
            "the mark of a look-alike name; write the name the site uses"
        )
    if scripts and scripts != {"LATIN"}:
        letters = [c for c in label if not c.isdigit() and c != "-"]
        if letters and all(c in _LOOKS_LATIN for c in letters):
            raise DomainError(
                f"{original!r}: the label {label!r} is written in letters that look like Latin ones, "
                "a look-alike of another name; write the name the site uses (in ASCII or its xn-- form)"
            )


def normalise(text: str, *, wildcard: bool = True) -> str:
    """The ASCII (punycode) form of a domain name or `*.suffix` pattern, or DomainError."""
    if not isinstance(text, str):
        raise DomainError("a domain must be a string")
    original = text
    # Checked before anything is stripped: a name that carries a line break or a space was meant
    # to be something else.
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise DomainError(f"{original!r} has spaces or control characters")
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise DomainError("an empty domain name")
    if name == "*" or name == "*.":
        raise DomainError("'*' alone would allow every domain; name the domains (or '*.example.org')")
    prefix = ""
    if name.startswith("*."):
        if not wildcard:
            raise DomainError(f"{original!r}: a wildcard is not allowed here; name the host")
        prefix, name = "*.", name[2:]
    if "*" in name:
        raise DomainError(f"{original!r}: '*' may only stand first, as in '*.example.org'")
    if "://" in name or "/" in name or ":" in name or "@" in name:
        raise DomainError(f"{original!r} is not a domain name (no scheme, port, path or user; e.g. pypi.org)")
    labels = name.split(".")
    ascii_labels = []
    for label in labels:
        if not label:
            raise DomainError(f"{original!r} has an empty label")
        if label.isascii():
            if label.startswith("xn--"):
                try:
                    decoded = idna.decode(label)
                except idna.IDNAError as exc:
                    raise DomainError(f"{original!r}: {label!r} is not valid punycode ({exc})") from None
                _check_unicode_label(decoded, original)
            ascii_label = label
        else:
            _check_unicode_label(unicodedata.normalize("NFC", label), original)
            try:
                ascii_label = idna.encode(label, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise DomainError(f"{original!r}: {label!r} is not a valid international label ({exc})") from None
        if not _LABEL.match(ascii_label):
            raise DomainError(
                f"{original!r}: {label!r} is not a DNS label (letters, digits and inner hyphens, at most 63)"
            )
        ascii_labels.append(ascii_label)
    result = ".".join(ascii_labels)
    if len(result) > MAX_NAME:
        raise DomainError(f"{original!r} is longer than {MAX_NAME} characters")
    if ascii_labels[-1].isdigit():
        raise DomainError(f"{original!r} looks like an address, not a name; give addresses as CIDR blocks")
    if prefix and len(ascii_labels) < 2:
        raise DomainError(f"{original!r} would allow a whole top-level domain; name the site ('*.example.org')")
    if not prefix and len(ascii_labels) < 2:
        raise DomainError(f"{original!r} is not a full domain name (e.g. pypi.org)")
    return prefix + result


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip(), strict=False)
        return True
    except ValueError:
        return False


def host_of(text: str) -> str:
    """A host as a client named it (a CONNECT target, a URL's host, an SNI): an address in its
    canonical form, or a normalised name (no wildcard). DomainError when it is neither."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return normalise(text, wildcard=False)


def matches(host: str, pattern: str) -> bool:
    """`host` (normalised) is `pattern`, or a subdomain of it when it is `*.suffix`."""
    if pattern.startswith("*."):
        return host.endswith("." + pattern[2:])
    return host == pattern


def first_match(host: str, patterns: Iterable[str]) -> str | None:
    for pattern in patterns:
        if matches(host, pattern):
            return pattern
    return None


def denied_by(entry: str, deny: Iterable[str]) -> str | None:
    """The deny pattern that forbids all of `entry` (a normalised name or `*.suffix`), if any. A
    wildcard entry that a deny pattern only narrows (`*.example.org` with `api.example.org` denied)
    is kept: the deny list is checked again at every connection."""
    for pattern in deny:
        if entry == pattern:
            return pattern
        if entry.startswith("*."):
            if pattern.startswith("*.") and matches(entry[2:], pattern):
                return pattern
        elif matches(entry, pattern):
            return pattern
    return None


def normalise_all(entries: Sequence[str], *, wildcard: bool = True) -> list[str]:
    return list(dict.fromkeys(normalise(e, wildcard=wildcard) for e in entries))
