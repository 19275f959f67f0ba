"""Count ceph/s3-tests results per feature group (each test's first marker, else a group from its name) and list
the suspected wrong successes (an error that was expected and not raised, or a 2xx where an error was).

    classify.py test_s3.py junit.xml
"""
import collections, re, sys
import xml.etree.ElementTree as ET
src = open(sys.argv[1]).read()
markers = {}
for m in re.finditer(r'((?:@pytest\.mark\.[a-z_0-9]+(?:\([^)]*\))?\s*\n)*)def (test_[a-z0-9_]+)', src):
    marks = re.findall(r'@pytest\.mark\.([a-z_0-9]+)', m.group(1))
    markers[m.group(2)] = [x for x in marks if not x.startswith('fails_on') and x not in ('parametrize',)]
t = ET.parse(sys.argv[2])
groups = collections.defaultdict(collections.Counter)
wrong = []
for c in t.getroot().iter('testcase'):
    name = c.get('name'); base = name.split('[')[0]
    kids = {k.tag: k for k in c}
    g = (markers.get(base) or [None])[0]
    if g is None or g == 'list_objects_v2':
        kw = [('post_object', 'post_object (browser form upload)'), ('object_lock', 'object_lock'), ('acl', 'acl'),
              ('versioning', 'versioning'), ('multipart_copy', 'upload_part_copy'), ('cors', 'cors'),
              ('policy', 'bucket_policy'), ('public', 'public_access_block'), ('sse', 'encryption'),
              ('encrypt', 'encryption'), ('lifecycle', 'lifecycle'), ('tagging', 'tagging'), ('logging', 'bucket_logging'),
              ('ownership', 'object_ownership'), ('attributes', 'object_attributes'), ('checksum', 'checksum'),
              ('website', 'website'), ('anonymous', 'acl'), ('bucket_create_exists', 'bucket naming'),
              ('not_owned', 'bucket naming')]
        g = next((grp for k, grp in kw if k in base), g or 'core')
    if 'skipped' in kids:
        groups[g]['skipped'] += 1; continue
    k = kids.get('failure', kids.get('error'))
    if k is None:
        groups[g]['passed'] += 1; continue
    groups[g]['failed'] += 1
    msg = (k.get('message') or '') + (k.text or '')[-3000:]
    first = (k.get('message') or '').split('\n')[0][:160]
    if re.search(r'not raised|assert 20[04] == [345]\d\d|Invalid response 20[04]', msg):
        wrong.append((name, first))
tot = collections.Counter()
for g in sorted(groups, key=lambda g: -sum(groups[g].values())):
    tot.update(groups[g])
    print(f"{g:<28} passed {groups[g]['passed']:>4}  failed {groups[g]['failed']:>4}  skipped {groups[g]['skipped']:>3}")
print(f"{'total':<28} passed {tot['passed']:>4}  failed {tot['failed']:>4}  skipped {tot['skipped']:>3}")
print("\nsuspected wrong successes:")
for n, m in wrong:
    print(" ", n, "|", m)
