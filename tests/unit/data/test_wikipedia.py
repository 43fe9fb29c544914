"""Wikipedia dumps (data/wikipedia.py): articles only, .bz2 like .xml, bad dumps refused, the markup cleaned."""
import bz2

import pytest

from glassformer.errors import UserError
from glassformer.data import clean_wikitext, detect_kind, open_source, read_wikipedia
from datapaths import data_path
from unit.data.test_sources import write


DUMP = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11">
  <siteinfo><sitename>Wikipedia</sitename></siteinfo>
  <page><title>Anarchism</title><ns>0</ns><id>12</id>
    <revision><id>1</id><text xml:space="preserve">{{Infobox|a={{nested|x}}}}'''Anarchism''' is a [[political philosophy|philosophy]].&lt;ref name="a"&gt;Cite {{x}}&lt;/ref&gt; See [[anarchy]].
== History ==
Early [http://example.com thinkers] &amp;amp; others.&lt;ref name="b" /&gt;
[[File:A.jpg|thumb|A [[caption]] here]]
[[Category:Politics]]</text></revision></page>
  <page><title>AccessibleComputing</title><ns>0</ns><id>10</id><redirect title="Computer accessibility" />
    <revision><text>#REDIRECT [[Computer accessibility]]</text></revision></page>
  <page><title>Old</title><ns>0</ns><id>11</id><revision><text>#redirect [[New]]</text></revision></page>
  <page><title>Wikipedia:About</title><ns>4</ns><id>13</id><revision><text>Project page.</text></revision></page>
  <page><title>Zebra</title><ns>0</ns><id>14</id><revision><text>A ''zebra'' is striped.</text></revision></page>
</mediawiki>
"""


DUMP_DOCS = ["Anarchism\n\nAnarchism is a philosophy. See anarchy.\n\nHistory\nEarly thinkers & others.",
             "Zebra\n\nA zebra is striped."]


def test_wikipedia_xml_articles_only(tmp_path):
    assert list(read_wikipedia(write(tmp_path / "dump.xml", DUMP))) == DUMP_DOCS
    assert list(read_wikipedia(write(tmp_path / "d.xml", DUMP), include_title=False))[1] == "A zebra is striped."


def test_wikipedia_bz2_reads_like_xml(tmp_path):
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(DUMP.encode()))
    assert detect_kind(path) == "wikipedia"
    assert list(open_source(path)) == DUMP_DOCS


def test_wikipedia_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not <mediawiki>"):
        list(read_wikipedia(write(tmp_path / "feed.xml", "<rss><channel/></rss>")))
    with pytest.raises(UserError, match="line 8, column 41: not well-formed"):      # </page> closes <title>
        list(read_wikipedia(write(tmp_path / "broken.xml", DUMP.replace("</title><ns>0", "<ns>0", 1))))
    latin1 = tmp_path / "latin1.xml"
    latin1.write_bytes(DUMP.replace("Zebra", "Z\xe9bra").encode("latin-1"))
    with pytest.raises(UserError, match="line 13.*not well-formed.*UTF-8"):
        list(read_wikipedia(latin1))
    corrupt = tmp_path / "corrupt.xml.bz2"
    corrupt.write_bytes(b"BZh9" + bytes(range(200)))
    with pytest.raises(UserError, match="corrupt or truncated"):
        list(read_wikipedia(corrupt))
    truncated = tmp_path / "truncated.xml.bz2"
    truncated.write_bytes(bz2.compress(DUMP.encode() * 3)[:-40])
    with pytest.raises(UserError, match="corrupt or truncated"):
        list(read_wikipedia(truncated))


@pytest.mark.parametrize("markup, plain", [
    ("a {{t|x={{u|{{v}}}}}} b", "a  b"),
    ("a\n{| class=x\n|-\n| 1 || {| \n| nested\n|}\n|}\nb", "a\n\nb"),
    ("x<ref>cite {{c}} [[l]]</ref>y<ref name=q/>z<ref name='r' >w</ref>.", "xyz."),
    ("[[Paris|the capital]] and [[Lyon]]s", "the capital and Lyons"),
    ("[[File:F.png|thumb|left|A [[Seine|river]] at [[Paris]]]]Text", "Text"),
    ("[[Image:I.jpg]][[Category:Cities| ]][[:Category:Cities]] [[de:Paris]]", "Category:Cities"),
    ("see [http://x.org/p?q=1 the site] or [https://y.org]", "see the site or"),
    ("'''bold''' and ''italic'' and '''''both'''''", "bold and italic and both"),
    ("intro\n== Life ==\ntext\n=== Early years===\nmore", "intro\n\nLife\ntext\n\nEarly years\nmore"),
    ("a<!-- hidden -->b<br/>c<span style='x'>d</span>&nbsp;&ndash;&amp;", "abcd\u00a0\u2013&"),
    ("* one\n# two\n: three", "one\ntwo\nthree"),
    ("stray }} and {{ unclosed template", "stray  and"),
])
def test_clean_wikitext(markup, plain):
    assert clean_wikitext(markup) == plain


def test_wikipedia_sample_dump():
    (path,) = data_path("wikipedia-sample").glob("*.bz2")
    assert detect_kind(path) == "wikipedia"
    docs = list(read_wikipedia(path))
    # 206 pages: 106 ns-0 articles, 99 ns-0 redirects, 1 ns-4 redirect (the data README's "100 redirects")
    assert len(docs) == 106
    assert docs[0].startswith("Anarchism\n\nAnarchism is a political philosophy")
    for doc in docs:
        assert "{{" not in doc and "[[" not in doc and "<ref" not in doc and "}}" not in doc, doc[:60]
