"""What counting a collection costs (issue 25.8): estimatedDocumentCount against countDocuments({}).

    python3 bench/count_cost.py --uri mongodb://127.0.0.1:27217/?directConnection=true --docs 1000000

Fills `count_bench.big` with --docs small documents (once; kept), deletes --delete of them, then times each
count --reps times and checks both are exact.
"""
import argparse, time
import pymongo
from bson import ObjectId

ap = argparse.ArgumentParser()
ap.add_argument("--uri", required=True)
ap.add_argument("--docs", type=int, default=1_000_000)
ap.add_argument("--delete", type=int, default=1000)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
c = pymongo.MongoClient(a.uri)["count_bench"]["big"]
have = c.estimated_document_count()
if have < a.docs:
    t = time.time()
    batch = []
    for i in range(have, a.docs):
        batch.append({"_id": ObjectId(), "n": i, "status": "x" * 40})
        if len(batch) == 10_000:
            c.insert_many(batch, ordered=False); batch = []
    if batch:
        c.insert_many(batch, ordered=False)
    print(f"inserted {a.docs - have} documents in {time.time() - t:.1f} s")
ids = [d["_id"] for d in c.find({}, {"_id": 1}).limit(a.delete)]
c.delete_many({"_id": {"$in": ids}})
want = a.docs - len(ids)
print(f"deleted {len(ids)}; {want} documents expected")
for name, f in [("estimatedDocumentCount", lambda: c.estimated_document_count()),
                ("countDocuments({})", lambda: c.count_documents({}))]:
    times, got = [], None
    for _ in range(a.reps):
        t = time.time(); got = f(); times.append(time.time() - t)
    print(f"{name}: {got} ({'exact' if got == want else 'OFF by %d' % (got - want)}), "
          f"{min(times)*1000:.0f}-{max(times)*1000:.0f} ms over {a.reps} runs")
