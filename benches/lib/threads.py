"""CPU of a process's threads, by name, from /proc (used by the bench scripts).

    threads.py snap PID
        prints a JSON snapshot: clock ticks per thread name, and the whole process's under
        "(process)" (which counts threads that ended too, as tantivy's indexing threads do at
        each commit).
    threads.py report BEFORE AFTER --cores SECS | --per-message N
        prints the difference between two snapshots, per thread name, as cores over SECS
        seconds or as microseconds per message over N messages; what no live thread accounts
        for is in "(ended threads)".
"""
import collections
import json
import os
import sys


def ticks(stat):
    fields = stat[stat.rindex(')') + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def snap(pid):
    out = collections.Counter()
    out['(process)'] = ticks(open(f'/proc/{pid}/stat').read())
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            stat = open(f'/proc/{pid}/task/{task}/stat').read()
        except OSError:
            continue  # ended meanwhile
        out[stat[stat.index('(') + 1:stat.rindex(')')]] += ticks(stat)
    return out


def report(before, after, mode, amount):
    hz = os.sysconf('SC_CLK_TCK')
    if mode == '--cores':
        scale, unit, fmt = 1 / hz / amount, 'cores', '.3f'
        header = 'total'
    else:
        scale, unit, fmt = 1e6 / hz / amount, 'µs', '.2f'
        header = 'server CPU per message'
    total = after.pop('(process)') - before.pop('(process)')
    print(f"{header} {total * scale:{fmt}} {unit}")
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta['(ended threads)'] = total - sum(delta.values())
    for name in sorted(delta, key=lambda name: -delta[name]):
        if delta[name] * scale >= 0.001:
            print(f"  {name:22s} {delta[name] * scale:{fmt}} {unit}")


if __name__ == '__main__':
    if sys.argv[1] == 'snap':
        print(json.dumps(snap(sys.argv[2])))
    else:
        report(json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
