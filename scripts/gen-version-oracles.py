#!/usr/bin/env python3
"""Regenerate the version-comparison oracle data under crates/kura-scan/tests/data/versions/.

Each output line is `a <op> b` with op one of `<`, `=`, `>`, as decided by the ecosystem's own
tool (not by Kura). The tests only read the committed files; this script is needed only to
refresh them. Output is deterministic for a given machine (fixed random seed).

Oracles and what they need (Debian machine):
  dpkg    `dpkg --compare-versions`               (dpkg; versions from `apt-cache dumpavail`)
  rpm     python `rpm.ver` comparison              (apt-get install python3-rpm; run with /usr/bin/python3)
  pep440  `packaging.version.Version`              (pip install packaging)
  npm     node + the `semver` package bundled with npm (semver.compare)
  maven   Maven's ComparableVersion main()         (maven-artifact jar shipped by Debian's `maven`)

Version corpora: `apt-cache dumpavail`, and the package lists under /work/.library/env/packages/
(pypi.tsv, npm.tsv) when present, plus mutations (pre-releases, epochs, revisions, ...).
apk data is copied from apk-tools' test/unit/version.data and rpm's tests/rpmvercmp.at cases are
transcribed by hand into rpm-upstream.txt; neither is produced here.

Usage: scripts/gen-version-oracles.py [dpkg|rpm|pep440|npm|maven ...]   (default: all)
"""

import json
import os
import random
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "kura-scan", "tests", "data", "versions")
PKG_LISTS = "/work/.library/env/packages"
SYMBOL = {-1: "<", 0: "=", 1: ">"}


def write(name, header, pairs):
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        for line in header:
            f.write("# " + line + "\n")
        for a, op, b in pairs:
            f.write(f"{a} {op} {b}\n")
    print(f"{name}: {len(pairs)} pairs, {os.path.getsize(path)} bytes")


def make_pairs(rng, versions, count):
    """Pairs biased towards near neighbours (after a plain string sort), which are the interesting ones."""
    versions = sorted(set(versions))
    pairs = set()
    while len(pairs) < count:
        i = rng.randrange(len(versions))
        if rng.random() < 0.6:
            j = min(len(versions) - 1, i + rng.randint(0, 3))
        else:
            j = rng.randrange(len(versions))
        pairs.add((versions[i], versions[j]))
    return sorted(pairs)


# ---------------------------------------------------------------- dpkg


def dpkg_versions(rng):
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True).stdout
    real = sorted(set(re.findall(r"^Version: (\S+)$", out, re.M)))
    base = rng.sample(real, min(1500, len(real)))
    extra = []
    for v in rng.sample(base, 600):
        kind = rng.randrange(10)
        if kind == 0:
            extra.append(f"{rng.randint(1, 3)}:{v.split(':', 1)[-1]}")
        elif kind == 1:
            extra.append(v + "~rc" + str(rng.randint(1, 3)))
        elif kind == 2:
            extra.append(v + "+deb12u" + str(rng.randint(1, 3)))
        elif kind == 3:
            extra.append(v + "~deb11u1")
        elif kind == 4:
            extra.append(v + "~")
        elif kind == 5:
            extra.append(v + "+b1")
        elif kind == 6:
            up = v.rsplit("-", 1)[0] if "-" in v else v
            extra.append(up + "-0ubuntu" + str(rng.randint(1, 4)))
        elif kind == 7:
            extra.append(re.sub(r"\d+", lambda m: str(int(m.group()) + 1), v, count=1))
        elif kind == 8:
            extra.append(v + "a")
        else:
            extra.append(v + ".0")
    extra += ["1.0", "1.0-0", "1.0-1", "0:1.0", "1.0~", "1.0~~", "1.0~~a", "1.0+", "1.0.", "1.0a", "1.0A",
              "1.0-1~bpo12+1", "1.00", "1.000-1", "1:0", "2:0.1~rc1-1", "1.0+dfsg-1", "1.0+dfsg1-1", "1.0-1.1",
              "1.0-1+b1", "1.0-a", "1.0-A", "1.0-+", "1.0-.", "1.0-~", "1.0-1~", "1.0-0~", "10.0", "9.99",
              "0.0.0", "0", "00", "0:0"]
    return base + extra


def dpkg_cmp(a, b):
    def run(op):
        p = subprocess.run(["dpkg", "--compare-versions", a, op, b], capture_output=True, text=True)
        if p.stderr:
            raise ValueError(p.stderr)
        return p.returncode == 0

    if run("lt"):
        return "<"
    return "=" if run("eq") else ">"


def gen_dpkg(rng):
    pairs = []
    for a, b in make_pairs(rng, dpkg_versions(rng), 5000):
        try:
            pairs.append((a, dpkg_cmp(a, b), b))
        except ValueError:
            pass
    write("dpkg.txt", ["oracle: dpkg --compare-versions (" + dpkg_version() + ");",
                       "versions: apt-cache dumpavail (Debian bookworm) plus mutations"], pairs)


def dpkg_version():
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "dpkg"], capture_output=True, text=True).stdout
    return "dpkg " + out.strip()


# ---------------------------------------------------------------- rpm


def rpm_versions(rng):
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True).stdout
    real = sorted(set(re.findall(r"^Version: (?:\d+:)?([0-9][0-9A-Za-z.+~]*)", out, re.M)))
    ups = [u.replace("+", ".") for u in rng.sample(real, 700)]
    dists = ["fc38", "fc39", "fc40", "el8", "el9", "el9_2", "el8_10", "amzn2", "amzn2023", "mga9", "suse", ""]
    vs = []
    for up in ups:
        rel = str(rng.randint(1, 12))
        d = rng.choice(dists)
        if d:
            rel += "." + d
        if rng.random() < 0.1:
            rel += "." + str(rng.randint(1, 3))
        v = f"{up}-{rel}"
        r = rng.random()
        if r < 0.1:
            v = f"{rng.randint(1, 3)}:{v}"
        elif r < 0.2:
            v = f"0:{v}"
        vs.append(v)
        k = rng.randrange(8)
        if k == 0:
            vs.append(f"{up}~rc{rng.randint(1, 3)}-{rel}")
        elif k == 1:
            vs.append(f"{up}^git{rng.randint(1, 3)}-{rel}")
        elif k == 2:
            vs.append(f"{up}^{rng.randint(20200101, 20240101)}-{rel}")
        elif k == 3:
            vs.append(f"{up}-{rel}.1")
        elif k == 4:
            vs.append(up)
        elif k == 5:
            vs.append(f"{up}a-{rel}")
        elif k == 6:
            vs.append(f"{up}_1-{rel}")
    vs += ["1.0", "1.0-1", "1.0-1.el9", "1.0~rc1-1", "1.0^git1-1", "1.0^-1", "1.0~-1", "1:1.0-1", "0:1.0-1",
           "1.0-1~", "1.0-1^", "1.01-1", "1.001-1", "1..0-1", "1.0.-1", "1.0a-1", "1.0A-1", "1.0-1.fc40",
           "1.0-1.fc40.1", "2-1", "10-1", "abc-1", "1.0_1-1", "1.0+1-1", "1.0~rc1^git2-1", "1.0^git1~pre-1"]
    return vs


def gen_rpm(rng):
    import rpm

    pairs = []
    for a, b in make_pairs(rng, rpm_versions(rng), 5000):
        c = (rpm.ver(a) > rpm.ver(b)) - (rpm.ver(a) < rpm.ver(b))
        pairs.append((a, SYMBOL[c], b))
    write("rpm.txt", [f"oracle: python rpm.ver comparison (rpm {rpm.__version__}), epoch:version-release;",
                      "versions: Debian upstream versions reshaped to rpm EVRs plus mutations"], pairs)


# ---------------------------------------------------------------- PEP 440


def pep440_versions(rng):
    vs = []
    path = os.path.join(PKG_LISTS, "pypi.tsv")
    with open(path) as f:
        next(f)
        rows = [line.split("\t")[1] for line in f if "\t" in line]
    vs += rng.sample(rows, 2500)
    from packaging.version import InvalidVersion, Version

    valid = []
    for v in vs:
        try:
            Version(v)
            valid.append(v)
        except InvalidVersion:
            pass
    extra = []
    forms = ["{v}a1", "{v}b2", "{v}rc1", "{v}RC1", "{v}.post1", "{v}.dev0", "{v}-1", "{v}+local.1", "{v}+abc",
             "{v}.0", "1!{v}", "v{v}", "{v}alpha1", "{v}-beta.2", "{v}c1", "{v}pre1", "{v}preview1", "{v}-r1",
             "{v}.rev2", "{v}_post3", "{v}.dev", "{v}a1.dev1", "{v}.post1.dev2", "{v}+ubuntu.1.2", "{v}+1.abc",
             "{v}a", "{v}.post", "{v}-dev3", " {v} ", "{v}+LOCAL", "{v}+local-1_2"]
    for v in rng.sample(valid, 900):
        extra.append(rng.choice(forms).format(v=v))
    extra += ["1.0", "1.0.0", "1", "1.0a1", "1.0a2.dev1", "1.0b1", "1.0rc1", "1.0c1", "1.0.post1", "1.0.dev1",
              "1.0+1", "1.0+a", "1.0+1.a", "1.0+a.1", "1.0+1.1", "0!1.0", "1!0.1", "01.00", "1.0.post1.dev1",
              "1.0-1", "1.0_post1", "1.0.rev1", "1.0r1", "1.0a0", "1.0a", "1.0.a.1", "1.0-a-1", "1.0_a_1"]
    out = []
    for v in valid + extra:
        try:
            Version(v)
            out.append(v)
        except InvalidVersion:
            pass
    return [v for v in out if " " not in v]


def gen_pep440(rng):
    import packaging
    from packaging.version import Version

    pairs = []
    for a, b in make_pairs(rng, pep440_versions(rng), 6000):
        va, vb = Version(a), Version(b)
        pairs.append((a, SYMBOL[(va > vb) - (va < vb)], b))
    write("pep440.txt", [f"oracle: packaging.version.Version (packaging {packaging.__version__});",
                         "versions: a sample of PyPI package versions plus mutations"], pairs)


# ---------------------------------------------------------------- npm semver


def gen_npm(rng):
    semver_dir = "/usr/lib/node_modules/npm/node_modules/semver"
    with open(os.path.join(PKG_LISTS, "npm.tsv")) as f:
        next(f)
        rows = [line.split("\t")[1] for line in f if "\t" in line]
    vs = rng.sample(rows, 2500)
    forms = ["{v}-alpha", "{v}-alpha.1", "{v}-beta.11", "{v}-rc.1", "{v}-0", "{v}-1", "{v}-x.7.z.92",
             "{v}+build.5", "{v}-beta+exp.sha.5114f85", "{v}-alpha.beta", "{v}-alpha.1.2", "{v}-a-b.c",
             "{v}-001x", "{v}-10", "{v}-9"]
    vs += [rng.choice(forms).format(v=v.split("-")[0].split("+")[0]) for v in rng.sample(vs, 900)]
    script = (
        f"const s=require({json.dumps(semver_dir)});const vs=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "console.log(JSON.stringify(vs.map(v=>s.valid(v)!==null&&!/^[v=]/.test(v))));"
    )
    ok = json.loads(subprocess.run(["node", "-e", script], input=json.dumps(vs), capture_output=True,
                                   text=True, check=True).stdout)
    valid = [v for v, good in zip(vs, ok) if good]
    pairs = make_pairs(rng, valid, 5000)
    script = (
        f"const s=require({json.dumps(semver_dir)});const ps=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "console.log(JSON.stringify(ps.map(([a,b])=>s.compare(a,b))));"
    )
    res = json.loads(subprocess.run(["node", "-e", script], input=json.dumps(pairs), capture_output=True,
                                    text=True, check=True).stdout)
    with open(os.path.join(semver_dir, "package.json")) as f:
        ver = json.load(f)["version"]
    write("semver-npm.txt", [f"oracle: node-semver {ver} semver.compare (strict SemVer 2.0 precedence);",
                             "versions: a sample of npm package versions plus pre-release/build mutations"],
          [(a, SYMBOL[c], b) for (a, b), c in zip(pairs, res)])


# ---------------------------------------------------------------- Maven


def maven_versions(rng):
    quals = ["alpha", "beta", "milestone", "rc", "cr", "snapshot", "ga", "final", "release", "sp", "a", "b", "m",
             "foo", "bar", "jre", "android", "incubating", "M", "RC", "SNAPSHOT", "Final", "GA", "SP", "pre", "dev"]
    vs = set()
    for _ in range(1500):
        n = rng.randint(1, 4)
        nums = [str(rng.choice([0, 0, 1, 1, 2, 3, 10, 11])) for _ in range(n)]
        v = ".".join(nums)
        k = rng.randrange(12)
        q = rng.choice(quals)
        if k == 0:
            v += f"-{q}"
        elif k == 1:
            v += f"-{q}{rng.randint(0, 3)}"
        elif k == 2:
            v += f".{q}"
        elif k == 3:
            v += f"{q}{rng.randint(1, 3)}"
        elif k == 4:
            v += f"-{q}-{rng.randint(0, 3)}"
        elif k == 5:
            v += f".{q}.{rng.randint(0, 3)}"
        elif k == 6:
            v += f"-{rng.randint(0, 3)}"
        elif k == 7:
            v += f"-{q}-SNAPSHOT"
        elif k == 8:
            v += f"-{rng.randint(0, 2)}-{q}"
        elif k == 9:
            v += f".{q}{rng.randint(0, 3)}"
        vs.add(v)
    vs |= {"1", "1.0", "1.0.0", "1-0", "1.0-0", "1-ga", "1-final", "1-release", "1.0.0.RELEASE", "1-sp", "1-sp1",
           "1-rc", "1-cr", "1-rc1", "1-cr1", "1-snapshot", "1-alpha", "1-a1", "1a1", "1-beta", "1-b1", "1-milestone",
           "1-m1", "1.0-alpha-1", "1.0alpha1", "1-1", "1.1", "1-0.1", "1.0.1", "1..1", "1--1", "1.", "1-", "1.0-",
           "2.0.0-RC1", "2.0.0.RC1", "1.0.0.Final", "1.0-jre", "1.0-android", "31.1-jre", "1-abc", "1-xyz", "1-1-1",
           "1.0.0-20230101.120000-1", "1-2.3", "1.2-3", "1x", "x1", "1-0-0", "0", "0.0", "1.0.0.0.0.1"}
    return sorted(vs)


def gen_maven(rng):
    jar = "/usr/share/maven/lib/maven-artifact-3.x.jar"
    pairs = make_pairs(rng, maven_versions(rng), 4000)
    res = []
    for i in range(0, len(pairs), 400):
        chunk = pairs[i:i + 400]
        args = [x for p in chunk for x in p]
        out = subprocess.run(["java", "-cp", jar, "org.apache.maven.artifact.versioning.ComparableVersion", *args],
                             capture_output=True, text=True, check=True).stdout
        cmp_lines = [line.split() for line in out.splitlines() if line.startswith("   ")]
        # main() compares every argument with the next one: keep the (2k, 2k+1) comparisons.
        for k, (a, b) in enumerate(chunk):
            la, op, lb = cmp_lines[2 * k]
            assert (la, lb) == (a, b), (la, lb, a, b)
            res.append((a, {"<": "<", "==": "=", ">": ">"}[op], b))
    mvn = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libmaven3-core-java"], capture_output=True,
                         text=True).stdout.strip()
    write("maven.txt", [f"oracle: org.apache.maven.artifact.versioning.ComparableVersion main() (Debian maven {mvn});",
                        "versions: generated number/qualifier/separator combinations"], res)


def main():
    which = sys.argv[1:] or ["dpkg", "rpm", "pep440", "npm", "maven"]
    for name in which:
        globals()["gen_" + name](random.Random("kura-" + name))


if __name__ == "__main__":
    main()
