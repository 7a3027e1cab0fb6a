"""caption-images --xmp (photo.jpg.xmp with dc:description and dc:subject, merged into an existing
file) and the batch summary's warning when captions collapse."""
from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from pipelines.images.cli import _collapse_warning, main
from pipelines.images.xmp import DC, RDF, XML, XmpError, merge_xmp

PHOTOS = {"cat": skimage.data.chelsea()[::3, ::3], "coffee": skimage.data.coffee()[::3, ::3],
          "rocket": skimage.data.rocket()[::3, ::3]}
FOREIGN = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
   xmp:Rating="3"
   darktable:xmp_version="5">
   <!-- edited in darktable -->
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">OLYMPUS DIGITAL CAMERA</rdf:li>
    </rdf:Alt>
   </dc:description>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday 2024</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1" darktable:params="0000c0bf"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def _photo(path: Path, which: str = "cat") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(PHOTOS[which]).save(path)
    return path


def _cli(*args: str | Path, weights: Path) -> int:
    return main([str(a) for a in args] + ["--weights", str(weights)])


def _records(path: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in map(json.loads, path.read_text().splitlines())}


def _xmp(path: Path) -> tuple[str | None, list[str], ET.Element]:
    """(the x-default dc:description, the dc:subject words, the root) of an XMP file, parsed as plain XML."""
    root = ET.parse(path).getroot()
    descriptions = root.findall(f".//{{{DC}}}description/{{{RDF}}}Alt/{{{RDF}}}li")
    assert len(descriptions) == 1 and descriptions[0].get(f"{{{XML}}}lang") == "x-default"
    subjects = [li.text for li in root.findall(f".//{{{DC}}}subject/{{{RDF}}}Bag/{{{RDF}}}li")]
    return descriptions[0].text, subjects, root


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    _photo(folder / "a.jpg")
    _photo(folder / "b.png", "coffee")
    return folder


def test_xmp_sidecars_hold_the_caption_and_everyday_tags(photos, tmp_path, tiny_bundle_dir, capsys):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()}
    out = tmp_path / "log.jsonl"
    assert _cli(photos, "--xmp", "--tags", "3", "--out", out, weights=tiny_bundle_dir) == 0
    records = _records(out)
    for name in ("a.jpg", "b.png"):
        description, subjects, _ = _xmp(photos / f"{name}.xmp")
        assert description == records[name]["caption"]
        assert subjects == [t["word"] for t in records[name]["everyday_tags"]] and subjects
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()
            if p.suffix != ".xmp"} == before  # the photos are never touched
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "a.jpg.xmp", "b.png", "b.png.xmp"]  # no temp files
    capsys.readouterr()
    assert _cli(photos, "--xmp", weights=tiny_bundle_dir) == 0  # XMP only: nothing on stdout, all done
    out_err = capsys.readouterr()
    assert out_err.out == "" and "captioned 0, skipped 2 (already done)" in out_err.err


def test_a_foreign_xmp_is_merged_keeping_its_other_fields(photos, tiny_bundle_dir, capsys):
    xmp = photos / "a.jpg.xmp"
    xmp.write_text(FOREIGN, encoding="utf-8")
    xmp.chmod(0o640)
    assert _cli(photos, "--xmp", weights=tiny_bundle_dir) == 0
    assert "a.jpg.xmp" not in capsys.readouterr().err  # merged, no note
    description, subjects, root = _xmp(xmp)
    assert description != "OLYMPUS DIGITAL CAMERA" and description
    assert subjects[0] == "holiday 2024" and len(subjects) == len(set(subjects)) > 1  # their keyword, then ours
    text = xmp.read_text(encoding="utf-8")
    assert text.startswith(FOREIGN.splitlines()[0]) and text.endswith('</x:xmpmeta>\n<?xpacket end="w"?>\n')
    assert "<!-- edited in darktable -->" in text and "ns0:" not in text
    assert 'xmp:Rating="3"' in text and 'darktable:xmp_version="5"' in text  # prefixes kept
    history = root.find(f".//{{http://darktable.sf.net/}}history//{{{RDF}}}li")
    assert history.attrib == {"{http://darktable.sf.net/}operation": "exposure",
                              "{http://darktable.sf.net/}enabled": "1", "{http://darktable.sf.net/}params": "0000c0bf"}
    assert root.get("{adobe:ns:meta/}xmptk") == "XMP Core 4.4.0-Exiv2"
    assert xmp.stat().st_mode & 0o777 == 0o640


def test_an_xmp_that_cannot_be_parsed_is_left_alone_and_the_batch_goes_on(photos, tmp_path, tiny_bundle_dir, capsys):
    broken = photos / "a.jpg.xmp"
    broken.write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF")  # cut off
    out = tmp_path / "log.jsonl"
    assert _cli(photos, "--xmp", "--out", out, weights=tiny_bundle_dir) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "a.jpg.xmp" in line]
    assert len(notes) == 1 and notes[0].startswith(f"caption-images: {broken}: cannot be merged into as XMP (not "
                                                   "well-formed XML")
    assert broken.read_bytes() == b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF"
    assert _xmp(photos / "b.png.xmp")[0] == _records(out)["b.png"]["caption"]
    assert "captioned 2, skipped 0 (already done), failed 0" in err


@pytest.mark.parametrize("content, why", [
    (b"<html><body/></html>", "its root element is <html>, not x:xmpmeta or rdf:RDF"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>',
     "it has a DOCTYPE"),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?><x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "encoded in ISO-8859-1"),
    (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "no rdf:RDF in its x:xmpmeta"),
])
def test_what_is_not_xmp_is_refused(content, why):
    with pytest.raises(XmpError, match=why):
        merge_xmp(content, "a cat", ["cat"])


def test_a_rerun_resumes_without_duplicating_or_rewriting(photos, tiny_bundle_dir, capsys):
    (photos / "a.jpg.xmp").write_text(FOREIGN, encoding="utf-8")
    assert _cli(photos, "--xmp", "--tags", "3", weights=tiny_bundle_dir) == 0
    files = sorted(photos.glob("*.xmp"))
    first = {p: (p.read_bytes(), os.stat(p).st_ino) for p in files}
    capsys.readouterr()
    assert _cli(photos, "--xmp", "--tags", "3", weights=tiny_bundle_dir) == 0  # the same command: all done
    assert "captioned 0, skipped 2 (already done)" in capsys.readouterr().err
    assert _cli(photos, "--xmp", "--tags", "3", "--no-skip-existing", weights=tiny_bundle_dir) == 0  # captioned again
    assert "captioned 2, skipped 0" in capsys.readouterr().err
    assert {p: (p.read_bytes(), os.stat(p).st_ino) for p in files} == first  # same content: not rewritten
    for p in files:
        subjects = _xmp(p)[1]
        assert len(subjects) == len(set(subjects))
    # other tag options: the words this tool added before go, the file's own keyword stays
    assert _cli(photos, "--xmp", "--tags", "1", "--no-skip-existing", weights=tiny_bundle_dir) == 0
    assert len(_xmp(photos / "a.jpg.xmp")[1]) == 2 and _xmp(photos / "a.jpg.xmp")[1][0] == "holiday 2024"
    assert len(_xmp(photos / "b.png.xmp")[1]) == 1


def test_merge_is_stable_and_keeps_unknown_prefixes():
    data, added = merge_xmp(None, "a cat on a <mat> & rug", ["cat", "food", "Cat"])
    assert added == ["cat", "food"]
    assert merge_xmp(data, "a cat on a <mat> & rug", ["cat", "food"], drop=added) == (data, added)
    one_line = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                b'<rdf:Description rdf:about="" xmlns:foo="urn:foo" foo:a="1"><foo:b>x</foo:b></rdf:Description>'
                b'</rdf:RDF></x:xmpmeta>')
    merged = merge_xmp(one_line, "t", [])[0].decode()
    assert merged.startswith('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF') and 'foo:a="1"' in merged
    assert "<foo:b>x</foo:b><dc:description" in merged and "dc:subject" not in merged


def test_the_summary_warns_when_captions_collapse(tmp_path, tiny_bundle_dir, capsys):
    folder = tmp_path / "photos"
    _photo(folder / "a.png")
    _photo(folder / "b.png")  # the same pixels: the same caption
    _photo(folder / "c.png", "rocket")
    out = tmp_path / "log.jsonl"
    assert _cli(folder, "--out", out, weights=tiny_bundle_dir) == 0
    captions = Counter(r["caption"] for r in _records(out).values())
    shared = sum(n for n in captions.values() if n > 1)
    assert shared >= 2
    assert f"caption-images: warning: {shared} of 3 photos share a caption with another photo" in \
        capsys.readouterr().err
    assert _cli(folder / "c.png", "--out", tmp_path / "one.jsonl", weights=tiny_bundle_dir) == 0
    assert "share a caption" not in capsys.readouterr().err
    assert _collapse_warning(Counter({"a dog": 1, "a cat": 1})) is None
    assert _collapse_warning(Counter({"a dog": 212, **{f"c{i}": 1 for i in range(788)}})) == \
        "warning: 212 of 1,000 photos share a caption with another photo"
