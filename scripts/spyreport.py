"""Summarize a py-spy raw file: own time, inclusive, and the callers of a function."""
import collections
import re
import sys

path = sys.argv[1]
focus = sys.argv[2:] 
own = collections.Counter(); inc = collections.Counter(); callers = collections.defaultdict(collections.Counter)
total = 0
short = lambda f: re.sub(r"/[^ ]*/(site-packages|python3.11|wt-h5)/", "", f)
for line in open(path):
    stack, _, n = line.rstrip().rpartition(" ")
    if not n.isdigit():
        continue
    n = int(n); total += n
    frames = [short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
    if not frames:
        continue
    own[frames[-1]] += n
    for f in set(frames):
        inc[f] += n
    for i, f in enumerate(frames):
        for x in focus:
            if x in f:
                callers[f][" <- ".join(reversed(frames[max(0, i - 3):i]))] += n
print("samples", total)
print("== own"); [print(f"{100*c/total:5.1f} {f}") for f, c in own.most_common(40)]
print("== inclusive"); [print(f"{100*c/total:5.1f} {f}") for f, c in inc.most_common(60)]
for f, cs in callers.items():
    print("== callers of", f)
    for s, c in cs.most_common(8):
        print(f"{100*c/total:5.1f} {s}")
