#!/usr/bin/env python3
"""Import circles between the files of one crate: the strongly connected components of the
graph "file A names an item of file B" (`use crate::…`, `crate::…` paths, `super::…`), following
`pub use` re-exports and ignoring `#[cfg(test)]` modules. A text scan, not a compiler: good
enough to see a new upward arrow inside a crate (docs/architecture.md, "Import circles").

Usage: scripts/dev/import-circles.py CRATE_SRC_DIR   (e.g. controller/src, panel/src, cli)"""
import os, re, sys
from collections import defaultdict

src = sys.argv[1].rstrip('/')
files = {}
for root, _, names in os.walk(src):
    for n in names:
        if n.endswith('.rs'):
            p = os.path.join(root, n)
            rel = os.path.relpath(p, src)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'):
                rel = rel[:-1]
            files[tuple(rel)] = p

def strip_tests(text):
    m = re.search(r'#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{', text)
    return text[:m.start()] if m else text

def expand_use(tree, prefix):
    """expand a use tree like a::{b, c::{d, e}} into paths"""
    out, depth, cur, parts = [], 0, '', []
    tree = tree.strip()
    i = tree.find('{')
    if i < 0:
        p = tree.split(' as ')[0].strip()
        return [prefix + [s for s in p.split('::') if s]] if p else []
    head = [s for s in tree[:i].split('::') if s]
    body = tree[i + 1:tree.rfind('}')]
    for ch in body:
        if ch == '{': depth += 1
        if ch == '}': depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
        else:
            cur += ch
    parts.append(cur)
    for part in parts:
        if part.strip():
            out += expand_use(part, prefix + head)
    return out

texts = {m: strip_tests(open(p).read()) for m, p in files.items()}
refs = defaultdict(list)
reexports = defaultdict(dict)
for mod, text in texts.items():
    isdir = files[mod].endswith(('mod.rs', 'lib.rs', 'main.rs'))
    here = list(mod) if isdir else list(mod[:-1])
    def absolute(path):
        if path[0] == 'crate':
            return path[1:]
        base = here[:]
        if path[0] == 'self':
            return base + path[1:]
        while path and path[0] == 'super':
            base = base[:-1]; path = path[1:]
        return base + path
    for m in re.finditer(r'(pub(\([^)]*\))?\s+)?use\s+((?:crate|super|self)::[^;]+);', text, re.S):
        for p in expand_use(m.group(3), []):
            a = absolute(p)
            refs[mod].append(a)
            if m.group(1) and a:
                reexports[mod][a[-1]] = a
    for m in re.finditer(r'(?<![\w:])((?:crate|super)(?:::\w+)+)', text):
        refs[mod].append(absolute(m.group(1).split('::')))

def resolve(path, seen=0):
    best = ()
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in files:
            best = tuple(path[:k]); rest = path[k:]; break
    if rest and rest[0] in reexports.get(best, {}) and seen < 5:
        target = reexports[best][rest[0]]
        if tuple(target[:len(best)]) != best or len(target) > len(best) + 1:
            return resolve(target + rest[1:], seen + 1)
    return best

edges = defaultdict(set)
for mod, rs in refs.items():
    for r in rs:
        t = resolve(r)
        if t != mod and t in files:
            # a parent module naming its child (mod/pub use) is structure, not an import back
            edges[mod].add(t)

# Tarjan
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in list(files):
    if v not in index:
        strong(v)
name = lambda m: '/'.join(m) or '(root)'
circles = [c for c in sccs if len(c) > 1]
print(f'{src}: {len(files)} files, {len(circles)} circle(s)')
for c in sorted(circles, key=len, reverse=True):
    print(f'  {len(c)} files: ' + ', '.join(sorted(name(m) for m in c)))
