"""Inclusive share of functions (by name substring, line-independent) in a py-spy raw file."""
import collections, re, sys
path = sys.argv[1]; names = sys.argv[2:]
inc = collections.Counter(); total = 0
for line in open(path):
    stack, _, n = line.rstrip().rpartition(" ")
    if not n.isdigit(): continue
    n = int(n); total += n
    frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
    for name in names:
        if any(name in f for f in frames):
            inc[name] += n
print("samples", total)
for name in names: print(f"{100*inc[name]/total:5.1f} {name}")
