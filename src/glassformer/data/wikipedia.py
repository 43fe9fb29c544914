"""Wikipedia XML dumps (MediaWiki export format), streamed with iterparse, and a wikitext markup cleaner."""
import html
import re
import xml.etree.ElementTree as ET
from bisect import bisect_left

from ..errors import UserError
from .io import BLOCK_BYTES, MAX_DOCUMENT_CHARS, READ_ERRORS, budget_stopped, open_binary, read_error

_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_DROPPED_TAGS = "ref|math|chem|gallery|timeline|imagemap|score|graph|mapframe"   # content is not prose
_OPENER = re.compile(rf"<({_DROPPED_TAGS})\b", re.I)          # where <ref ...> and <ref .../> start
_CLOSER = re.compile(rf"</({_DROPPED_TAGS})\s*>", re.I)        # </ref>
_CLOSE_SELF = re.compile(r"/\s*$")                             # the end of a self-closed tag's inside
_TEMPLATE_TOKENS = re.compile(r"\{\{|\}\}")
_TABLE_TOKENS = re.compile(r"\{\||\|\}")
_LINK_TOKENS = re.compile(r"\[\[|\]\]")
_MEDIA_LINK = re.compile(r"\s*(?:file|image|media|category)\s*:", re.I)   # pictures and categories
_LANGUAGE_LINK = re.compile(r"[a-z]{2,3}(?:-[a-z]+)*:")                       # [[de:Anarchismus]]
_EXTERNAL_LINK = re.compile(r"\[(?:(?:(?:https?|ftp):)?//|mailto:)[^\s\]]+(?:\s+([^\]]*))?\]")
# the title never ends in a space (the space goes to \s*), so it is tried only up to each non-space: each
# space run is scanned once, not once per title length (atomic (?>...): no retry that could not match)
_HEADING = re.compile(r"^(={1,6})(?>\s*)((?:.*?\S)??)(?>\s*)\1\s*$", re.M)
_QUOTES = re.compile(r"'{2,}")                  # '' italic, ''' bold, ''''' both
_HTML_TAGS = ("abbr b bdi bdo big blockquote br caption center cite code data dd del dfn div dl dt em font "
              "h1 h2 h3 h4 h5 h6 hr i ins kbd li mark ol p pre q rb rp rt rtc ruby s samp small span strike "
              "strong sub sup table td th time tr tt u ul var wbr "           # the HTML MediaWiki allows
              "nowiki poem references section includeonly noinclude onlyinclude syntaxhighlight source "
              "categorytree indicator templatedata hiero inputbox").split()   # extension tags, content kept
_TAG = re.compile(rf"</?(?:{'|'.join(_HTML_TAGS)})(?:\s[^<>]*)?/?>", re.I)   # real tags only: not x<y and y>z
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
GAP = "\0"                                # where a span was cut: keeps ''{{t}}'' two runs, not one (XML has no NUL)
_GAPS = re.compile(GAP + "+")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_LIST_MARK = re.compile(r"^[*#:;]+\s*|^-{4,}\s*$", re.M)
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
# a character reference of 9+ decimal or 7+ hex digits is above U+10FFFF: html.unescape gives U+FFFD, but
# only after int() of all its digits (a ValueError past 4,300 of them)
_HUGE_CHARREF = re.compile(r"&#(?:[xX]0*+[0-9a-fA-F]{7,}|0*+[0-9]{9,});?")
MAX_LINK_DEPTH = 32                       # [[ inside [[ deeper than this is dropped: nesting costs a copy per level


def _space_end(text, q, cache):
    """Where the whitespace run that ends just before position q begins (cached: many tags share a q)."""
    if q not in cache:
        k = q
        while k and text[k - 1].isspace():
            k -= 1
        cache[q] = k
    return cache[q]


def _drop_self_closed(text):
    """Remove <ref .../>-style tags (the dropped tags, self-closed), as a left-to-right regex sub would,
    in one pass: each tag ends at the next >, and whether a '/' ends its inside is asked once per >."""
    out, pos, cache = [], 0, {}
    for m in _OPENER.finditer(text):
        if m.start() < pos:
            continue                      # inside a tag removed already
        q = text.find(">", m.end())
        if q < 0:
            break                         # no > after: no tag from here on
        k = _space_end(text, q, cache)
        if k > m.end() and text[k - 1] == "/":
            out.append(text[pos:m.start()])
            pos = q + 1
    out.append(text[pos:])
    return "".join(out)


def _drop_blocks(text):
    """Remove <ref ...>...</ref> spans (the first closer of the same name after the opening tag), in one
    pass: an opener never closed costs a binary search, not a scan to the end of the text."""
    closers = {}                          # name -> ([starts], [ends]) of its closing tags, in order
    for m in _CLOSER.finditer(text):
        starts, ends = closers.setdefault(m.group(1).casefold(), ([], []))
        starts.append(m.start())
        ends.append(m.end())
    out, pos = [], 0
    for m in _OPENER.finditer(text) if closers else ():
        if m.start() < pos:
            continue
        q = text.find(">", m.end())
        if q < 0:
            break
        starts, ends = closers.get(m.group(1).casefold(), ((), ()))
        i = bisect_left(starts, q + 1)
        if i < len(starts):
            out.append(text[pos:m.start()])
            pos = ends[i]
    out.append(text[pos:])
    return "".join(out)


def _sub_upto_last(pattern, repl, text, last):
    """pattern.sub(repl, text) for a pattern whose every match ends with `last`: the text after the last
    `last` is left out of the search, so a start with no end is never scanned to the end of the text."""
    cut = text.rfind(last) + 1
    return pattern.sub(repl, text[:cut]) + text[cut:] if cut else text


def _remove_nested(text, tokens, opener):
    """Delete balanced, possibly nested spans like {{ ... {{ ... }} ... }}; stray closers go too."""
    # an opener never closed drops only to the end of its paragraph, not the rest of the article
    spans, stack = [], []                 # spans: (start, end) to delete; stack: starts of open spans
    for m in tokens.finditer(text):
        if m.group() == opener:
            stack.append(m.start())
        elif stack:
            spans.append((stack.pop(), m.end()))
        else:                             # a closer with no opener: drop the token only
            spans.append((m.start(), m.end()))
    if stack:
        breaks = [m.start() for m in _PARAGRAPH_BREAK.finditer(text)] + [len(text)]
        spans += [(start, breaks[bisect_left(breaks, start)]) for start in stack]
    out, pos = [], 0
    for start, end in sorted(spans):      # nested spans lie inside their parent's: keep what none covers
        if start >= pos:
            out += [text[pos:start], GAP]
        pos = max(pos, end)
    out.append(text[pos:])
    return "".join(out)


def _strip_quotes(line):
    """One line without its bold/italic apostrophes, literal ones kept, by MediaWiki's rules (doQuotes)."""
    # 4 apostrophes are ' + bold, more than 5 the extras + bold italic; when the counts of italic and of
    # bold runs are both odd, one bold run is read as ' + italic, so ''Iliad'''s gives Iliad's
    runs = list(_QUOTES.finditer(line)) if "''" in line else None
    if not runs:
        return line
    sizes = [len(m.group()) for m in runs]
    literal = [1 if n == 4 else n - 5 if n > 5 else 0 for n in sizes]
    marks = [n - k for n, k in zip(sizes, literal)]                      # 2, 3 or 5
    if sum(m in (2, 5) for m in marks) % 2 and sum(m in (3, 5) for m in marks) % 2:
        k = _bold_read_as_italic(line, runs, marks, literal)
        if k is not None:
            literal[k] += 1
    out, pos = [], 0
    for m, k in zip(runs, literal):
        out += [line[pos:m.start()], "'" * k]
        pos = m.end()
    out.append(line[pos:])
    return "".join(out)


def _bold_read_as_italic(line, runs, marks, literal):
    """Which bold run becomes ' + italic: the first after a one-letter word, else after a word, else a space."""
    after_word = after_space = None
    for k, (m, mark) in enumerate(zip(runs, marks)):
        if mark != 3:
            continue
        before = line[max(0, m.start() - 2):m.start()] + "'" * literal[k]   # its last 2: no copy of the line
        x1, x2 = before[-1:], before[-2:-1]
        if x1 == " ":
            after_space = k if after_space is None else after_space
        elif x2 == " ":
            return k
        elif after_word is None:
            after_word = k
    return after_word if after_word is not None else after_space


def _link_text(inner):
    """What a [[...]] link shows: the text after the first |, or the target; File/Category/language links: nothing."""
    target, bar, label = inner.partition("|")
    if _MEDIA_LINK.match(target) or (not bar and _LANGUAGE_LINK.match(target)):
        return ""
    shown = bar and label.strip(GAP)      # a label that was only a template shows the target
    return label if shown else target.lstrip(":")            # [[:Category:X]] is a visible link


def _replace_links(text):
    """[[target|label]] -> label, [[target]] -> target, innermost first so [[File:a|[[b]] c]] goes whole."""
    stack, start, depth_cut = [[]], 0, 0   # stack of open links, each a list of text parts
    for m in _LINK_TOKENS.finditer(text):
        stack[-1].append(text[start:m.start()])
        start = m.end()
        if m.group() == "[[":
            if len(stack) <= MAX_LINK_DEPTH:
                stack.append([])
            else:
                depth_cut += 1            # its ]] is dropped with it
        elif depth_cut:
            depth_cut -= 1
        elif len(stack) > 1:
            inner = "".join(stack.pop())
            stack[-1].append(GAP + _link_text(inner) + GAP)    # ''[[a|''b'']]'': quotes inside stay apart
    stack[-1].append(text[start:])
    while len(stack) > 1:                 # unclosed [[: keep the text, drop the brackets
        inner = "".join(stack.pop())
        stack[-1].append(inner)
    return "".join(stack[0])


def clean_wikitext(text):
    """Plain prose from wikitext: templates, tables, refs, tags and file/category links removed, links -> text."""
    text = _COMMENT.sub("", text)
    text = _drop_self_closed(text)
    text = _drop_blocks(text)
    text = _remove_nested(text, _TEMPLATE_TOKENS, "{{")
    text = _remove_nested(text, _TABLE_TOKENS, "{|")
    text = _replace_links(text)
    text = _GAPS.sub(lambda m: GAP if text[m.start() - 1:m.start()] == "'" == text[m.end():m.end() + 1] else "",
                     text)                # a gap matters only between two apostrophe runs
    text = _sub_upto_last(_EXTERNAL_LINK, lambda m: m.group(1) or "", text, "]")
    text = _HEADING.sub(lambda m: "\n" + m.group(2), text)   # the heading on its own line, a blank line before
    text = "\n".join(_strip_quotes(line) for line in text.split("\n")).replace(GAP, "")
    text = _TAG.sub("", text)
    text = _MAGIC_WORD.sub("", text)
    text = _LIST_MARK.sub("", text)
    text = html.unescape(_HUGE_CHARREF.sub("\ufffd", text))   # &amp; &nbsp; ... written in the wikitext
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _local(tag):
    """The tag without its {namespace} prefix: dumps use export-0.10, 0.11, ... namespaces."""
    return tag.rpartition("}")[2]


def _page_fields(page):
    """(title, ns, is_redirect, text) of a <page> element; the last revision's text."""
    title, ns, redirect, text = "", "0", False, ""
    for child in page:
        name = _local(child.tag)
        if name == "title":
            title = child.text or ""
        elif name == "ns":
            ns = (child.text or "").strip()
        elif name == "redirect":
            redirect = True
        elif name == "revision":
            for part in child:
                if _local(part.tag) == "text":
                    text = part.text or ""
    redirect = redirect or text.lstrip()[:9].upper() == "#REDIRECT"
    return title, ns, redirect, text


def _xml_events(f, path, max_page=MAX_DOCUMENT_CHARS):
    """("start"/"end", element) of the XML in f, as ET.iterparse gives them, fed in blocks; a <page> whose
    XML is over max_page bytes is one UserError (expat holds a page's text whole until it ends)."""
    parser, since_page = ET.XMLPullParser(events=("start", "end")), 0
    while block := f.read(BLOCK_BYTES // 16):
        parser.feed(block)
        since_page += len(block)
        for event, elem in parser.read_events():
            if event == "end" and _local(elem.tag) == "page":
                since_page = 0
            yield event, elem
        if since_page > max_page:
            raise UserError(f"{path}: a <page> of over {max_page:,} bytes of XML: no page is read whole above "
                            "that; is it a MediaWiki dump?")
    try:
        parser.close()
    except ET.ParseError:
        if budget_stopped(f):             # the reading budget cut the XML: the pages before the cut stand
            return
        raise
    yield from parser.read_events()


def read_wikipedia(path, include_title=True, clean=True):
    """Articles of a MediaWiki XML dump (.xml or .xml.bz2): namespace 0 only, redirects skipped, markup cleaned."""
    with open_binary(path) as f:
        events = _xml_events(f, path)
        try:
            _, root = next(events)
            if _local(root.tag) != "mediawiki":
                raise UserError(f"{path}: root element is <{_local(root.tag)}>, not <mediawiki>: not a MediaWiki "
                                "XML dump; download a pages-articles .xml.bz2 dump, or pick another kind")
            for event, elem in events:
                if event != "end" or _local(elem.tag) != "page":
                    continue
                title, ns, redirect, text = _page_fields(elem)
                root.clear()              # drop finished pages: memory stays flat on a multi-GB dump
                if ns != "0" or redirect:
                    continue
                body = clean_wikitext(text) if clean else text
                if body:
                    yield f"{title}\n\n{body}" if include_title else body
        except ET.ParseError as e:
            line, column = e.position
            raise UserError(f"{path}: line {line}, column {column}: not well-formed XML ({e.msg.split(':')[0]}); "
                            "is the file complete, and UTF-8 MediaWiki XML?") from None
        except StopIteration:
            raise UserError(f"{path}: empty file; expected a MediaWiki XML dump") from None
        except READ_ERRORS as e:
            raise read_error(path, e) from None
