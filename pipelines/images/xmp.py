"""XMP sidecars: ``photo.jpg`` -> ``photo.jpg.xmp`` (the name darktable and digiKam read) with the
caption as ``dc:description`` (an ``rdf:Alt``, ``xml:lang="x-default"``) and the everyday tags
as ``dc:subject`` (an ``rdf:Bag``). The photo itself is never touched. A caption withheld by
``--min-confidence`` writes no ``dc:description`` (the tags still go in; an existing description stays).

An existing ``.xmp`` (another program's, or one this tool wrote) is merged into: its
``dc:description`` is replaced; its ``dc:subject`` keeps the keywords it holds and gains the
everyday words it lacks, less the words this tool added last time (kept in the extended
attribute ``user.caption-images.xmp-subjects``), so a re-run neither repeats nor piles up
words; every other element, attribute, comment, namespace prefix and the text around the
root element (the ``<?xpacket?>`` wrapper) stay as they were. A file that is not UTF-8 XML
with an XMP root (``x:xmpmeta`` or ``rdf:RDF``), has a DOCTYPE, is not a regular file or is
larger than 16 MB is left alone, and the photo gets no XMP sidecar (a one-line note).

Plain ``xml.etree`` parses it (expat: no external entities, and no DOCTYPE is accepted, so no
entity expansion either), with a small namespace-aware writer of its own so that the file's
prefixes and the places where it declares them are kept (ElementTree's writer renames unknown
prefixes ``ns0``... and needs a process-wide prefix registry).
"""
from __future__ import annotations

import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Collection, Sequence

from .sidecars import SidecarFiles, atomic_write, read_regular, written_by_us

X = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
XMP = "http://ns.adobe.com/xap/1.0/"
XML = "http://www.w3.org/XML/1998/namespace"
PREFIXES = {X: "x", RDF: "rdf", DC: "dc", XMP: "xmp", XML: "xml"}  # used for a namespace the file does not declare
SUBJECTS_XATTR = "user.caption-images.xmp-subjects"  # JSON list: the dc:subject words this tool added
XMP_LIMIT = 16 << 20  # larger files are left alone

_NEW = (f'<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta xmlns:x="{X}">\n <rdf:RDF xmlns:rdf="{RDF}">\n'
        f'  <rdf:Description rdf:about="" xmlns:dc="{DC}"/>\n </rdf:RDF>\n</x:xmpmeta>\n').encode()
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.S)  # BOM, declaration, PIs, comments
_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")


class XmpError(ValueError):
    """A file that cannot be merged into as XMP; the message says why (without the file name)."""


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class XmpSidecars(SidecarFiles):
    """``photo.jpg`` -> ``photo.jpg.xmp`` with the caption and the everyday tags, merged into an
    existing file (see the module docstring); the full name of every photo makes the names
    collision-free (``image.bmp.xmp``, ``image.webp.xmp``)."""

    def __init__(self) -> None:
        super().__init__(".xmp", full_names=True)

    def done(self, image: str | os.PathLike) -> bool:
        """Done when its XMP is one this tool wrote (or merged into) and nobody changed since."""
        path = self.path_for(image)
        content = read_regular(path, XMP_LIMIT) if os.path.lexists(path) else None
        return content is not None and written_by_us(path, content)

    def _write_one(self, target: Path, record: dict[str, Any]) -> str | None:
        existing, ours_before, mode = None, [], None
        if os.path.lexists(target):
            existing = read_regular(target, XMP_LIMIT)
            if existing is None:
                return (f"{target}: not a regular file of at most {XMP_LIMIT >> 20} MB; left as it is, "
                        "no XMP written for this photo")
            ours_before = _added_subjects(target)
            try:
                mode = stat.S_IMODE(target.stat().st_mode)
            except OSError:
                pass
        words = [t["word"] for t in record.get("everyday_tags") or []]
        try:
            data, added = merge_xmp(existing, record["caption"], words, drop=ours_before)
        except XmpError as e:
            return f"{target}: cannot be merged into as XMP ({e}); left as it is, no XMP written for this photo"
        if data != existing:
            atomic_write(target, data, xattrs={SUBJECTS_XATTR: json.dumps(added).encode()}, mode=mode)
        return None


def _added_subjects(path: Path) -> list[str]:
    try:
        words = json.loads(os.getxattr(path, SUBJECTS_XATTR, follow_symlinks=False))
    except (OSError, AttributeError, ValueError):
        return []
    return [w for w in words if isinstance(w, str)] if isinstance(words, list) else []


def merge_xmp(existing: bytes | None, description: str | None, subjects: Sequence[str], *,
              drop: Collection[str] = ()) -> tuple[bytes, list[str]]:
    """``existing`` XMP (None: a new packet) with ``dc:description`` set to ``description`` (None:
    a caption withheld by --min-confidence; its ``dc:description`` left as it is, a new packet gets none) and
    ``dc:subject`` holding its keywords less ``drop``, then those of ``subjects`` it lacks
    (compared without case; none at all: no dc:subject). Returns the UTF-8 bytes and the
    subjects added. Raises XmpError on a file that is not XMP."""
    prolog, root, declared, epilog = _parse(_NEW if existing is None else existing)
    rdf = root if root.tag == q(RDF, "RDF") else root.find(q(RDF, "RDF"))
    if rdf is None:
        raise XmpError(f"no rdf:RDF in its {_name(root.tag)}")
    parents = {child: parent for parent in root.iter() for child in parent}
    descriptions = rdf.findall(q(RDF, "Description"))
    if not descriptions:
        descriptions = [ET.Element(q(RDF, "Description"), {q(RDF, "about"): ""})]
        _append(rdf, descriptions[0], parents)

    kept: list[str] = []
    dropped = {w.casefold() for w in drop}
    for d in descriptions:
        if description is not None:
            d.attrib.pop(q(DC, "description"), None)  # not XMP's form for these arrays, but written by some tools
        if (value := d.attrib.pop(q(DC, "subject"), None)) and value.strip():
            kept.append(value.strip())
        for child in d.findall(q(DC, "subject")):
            items = [li.text or "" for li in child.iter(q(RDF, "li"))] if child.find(f".//{q(RDF, 'li')}") is not None \
                else [child.text or ""]
            kept += [w.strip() for w in items if w.strip()]
    kept = _unique(kept, skip=dropped)
    added = _unique([w.strip() for w in subjects if w.strip()], skip={w.casefold() for w in kept})

    if description is not None:
        _put(descriptions, parents, q(DC, "description"), q(RDF, "Alt"), [(description, {q(XML, "lang"): "x-default"})])
    _put(descriptions, parents, q(DC, "subject"), q(RDF, "Bag"), [(w, {}) for w in kept + added])
    out: list[str] = []
    _write(root, declared, {"xml": XML}, out)
    return prolog + "".join(out).encode("utf-8") + epilog, added


def _unique(words: list[str], *, skip: Collection[str]) -> list[str]:
    """``words`` in order, each once (compared without case), less those in ``skip`` (casefolded)."""
    seen, unique = set(skip), []
    for w in words:
        if w.casefold() not in seen:
            seen.add(w.casefold())
            unique.append(w)
    return unique


class _Builder(ET.TreeBuilder):
    """A TreeBuilder that keeps comments, processing instructions and which element declared which prefixes."""

    def __init__(self) -> None:
        super().__init__(insert_comments=True, insert_pis=True)
        self.declared: dict[ET.Element, list[tuple[str, str]]] = {}
        self._pending: list[tuple[str, str]] = []

    def start_ns(self, prefix: str, uri: str) -> None:
        self._pending.append((prefix, uri))

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        element = super().start(tag, attrs)
        if self._pending:
            self.declared[element], self._pending = self._pending, []
        return element


def _parse(data: bytes) -> tuple[bytes, ET.Element, dict[ET.Element, list[tuple[str, str]]], bytes]:
    """(the bytes before the root element, the root, the declarations, the bytes after it)."""
    if (m := _ENCODING.match(data)) and m.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        raise XmpError(f"encoded in {m.group(1).decode('ascii', 'replace')}; only UTF-8 XMP is merged into")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise XmpError("not UTF-8 text") from None
    start = _PROLOG.match(data).end()
    if data.startswith(b"<!", start):
        raise XmpError("it has a DOCTYPE, which XMP never has")
    builder = _Builder()
    parser = ET.XMLParser(target=builder)
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as e:
        raise XmpError(f"not well-formed XML: {e}") from None
    if root.tag not in (q(X, "xmpmeta"), q(X, "xapmeta"), q(RDF, "RDF")):
        raise XmpError(f"its root element is {_name(root.tag)}, not x:xmpmeta or rdf:RDF")
    name = re.match(rb"<([^\s/>]+)", data[start:]).group(1)
    close = data.rfind(b"</" + name)
    end = data.index(b">", close) + 1 if close > start else data.index(b"/>", start) + 2  # or an empty root
    return data[:start], root, builder.declared, data[end:]


def _name(tag: Any) -> str:
    if not isinstance(tag, str):
        return "a comment"
    namespace, _, local = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
    return f"{PREFIXES[namespace]}:{local}" if namespace in PREFIXES else f"<{local}>"


def _put(descriptions: list[ET.Element], parents: dict[ET.Element, ET.Element], prop: str, container: str,
         items: list[tuple[str, dict[str, str]]]) -> None:
    """Replace the first ``prop`` element (or append one to the first rdf:Description) with
    ``prop``/``container``/``rdf:li`` per item, indented as its surroundings; remove the others."""
    found = [(d, child) for d in descriptions for child in d.findall(prop)]
    if not found and not items:
        return
    element = ET.Element(prop)
    if found:
        d, old = found[0]
        element.tail = old.tail
        d[list(d).index(old)] = element
        parents[element] = d
        for d, other in found[1:]:
            _remove(d, other)
    else:
        _append(descriptions[0], element, parents)
    if not items:
        _remove(parents[element], element)
        return
    indent = _indent_before(element, parents)
    step = " " if "\n" in indent else ""
    box = ET.SubElement(element, container)
    element.text, box.tail = indent + step, indent
    box.text = indent + 2 * step
    for i, (text, attrib) in enumerate(items):
        li = ET.SubElement(box, q(RDF, "li"), attrib)
        li.text, li.tail = text, indent + (2 * step if i < len(items) - 1 else step)


def _remove(parent: ET.Element, child: ET.Element) -> None:
    """Remove ``child``, giving the whitespace after it to what preceded it."""
    index = list(parent).index(child)
    if index:
        parent[index - 1].tail = child.tail
    else:
        parent.text = child.tail if not (parent.text or "").strip() else parent.text
    parent.remove(child)


def _append(parent: ET.Element, child: ET.Element, parents: dict[ET.Element, ET.Element]) -> None:
    """Append ``child`` to ``parent`` at the indentation of its other children (or one deeper than ``parent``)."""
    kids = list(parent)
    if kids:
        child.tail = kids[-1].tail
        kids[-1].tail = parent.text if parent.text and not parent.text.strip() else ""
    else:
        outer = _indent_before(parent, parents)
        if "\n" in outer:
            parent.text, child.tail = outer + " ", outer
    parent.append(child)
    parents[child] = parent


def _indent_before(element: ET.Element, parents: dict[ET.Element, ET.Element]) -> str:
    """The whitespace from the last line break before ``element``'s start tag ("" when none)."""
    parent = parents.get(element)
    if parent is None:
        return "\n"
    index = list(parent).index(element)
    before = parent[index - 1].tail if index else parent.text
    before = before or ""
    return before[before.rfind("\n"):] if "\n" in before and not before.strip() else ""


def _write(element: ET.Element, declared: dict[ET.Element, list[tuple[str, str]]], scope: dict[str, str],
           out: list[str]) -> None:
    """Serialize ``element`` (and its tail) into ``out``: the prefixes it declared where it declared
    them, new namespaces declared where first used. ``scope``: prefix -> namespace in effect."""
    tag = element.tag
    if tag is ET.Comment:
        out.append(f"<!--{element.text or ''}-->")
    elif tag is ET.ProcessingInstruction:
        out.append(f"<?{element.text or ''}?>")
    else:
        declarations = list(declared.get(element, []))
        scope = {**scope, **dict(declarations)}  # a copy: what this element declares is not its parent's
        name = _qualified(tag, scope, declarations, attribute=False)
        attributes = [(_qualified(k, scope, declarations, attribute=True), v) for k, v in element.attrib.items()]
        out.append("<" + name)
        out += [f' xmlns{":" + p if p else ""}="{_escape(u, True)}"' for p, u in declarations]
        out += [f' {k}="{_escape(v, True)}"' for k, v in attributes]
        if element.text is None and not len(element):
            out.append("/>")
        else:
            out.append(">" + _escape(element.text or "", False))
            for child in element:
                _write(child, declared, scope, out)
            out.append(f"</{name}>")
    out.append(_escape(element.tail or "", False))


def _qualified(tag: str, scope: dict[str, str], declarations: list[tuple[str, str]], *, attribute: bool) -> str:
    """``{namespace}local`` as prefix:local in ``scope``, declaring a prefix (added to both) when none is in effect."""
    if not tag.startswith("{"):
        if not attribute and scope.get(""):  # a default namespace in effect: undeclare it here
            declarations.append(("", ""))
            scope[""] = ""
        return tag
    namespace, local = tag[1:].split("}", 1)
    for prefix in reversed(scope):
        if scope[prefix] == namespace and (prefix or not attribute):
            return f"{prefix}:{local}" if prefix else local
    prefix = PREFIXES.get(namespace)
    n = 0
    while prefix is None or prefix in scope:
        prefix, n = f"ns{n}", n + 1
    declarations.append((prefix, namespace))
    scope[prefix] = namespace
    return f"{prefix}:{local}"


def _escape(text: str, attribute: bool) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return text
