/**
 * Reading V8 heap snapshots (.heapsnapshot, the JSON that `--heapsnapshot-signal` and
 * v8.writeHeapSnapshot() write) in tests: live objects counted by constructor name. A snapshot is
 * taken after a full GC, so what it holds is what the process keeps.
 *
 * The format: `snapshot.meta.node_fields` names the fields of each node (type, name, id,
 * self_size, edge_count, ...), `nodes` is a flat array of those fields, node after node, and
 * `strings` holds the names. For a node of type "object" the name is its constructor's name.
 */

/** Live objects of one constructor: how many, and their own bytes (not what they retain). */
export interface ConstructorCount {
  count: number;
  bytes: number;
}

/** A heap snapshot, summarised. */
export interface HeapSummary {
  /** Self bytes of every node (the live heap after the snapshot's GC). */
  totalBytes: number;
  /** Objects (node type "object") and native wrappers (type "native") by constructor name. */
  byConstructor: Map<string, ConstructorCount>;
}

interface RawSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Counts the objects of a .heapsnapshot's JSON text by constructor name. Throws on a partial or malformed file. */
export function summariseHeapSnapshot(json: string): HeapSummary {
  const raw = JSON.parse(json) as RawSnapshot;
  const fields = raw.snapshot.meta.node_fields;
  const types = raw.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  if (width === 0 || typeAt < 0 || nameAt < 0 || sizeAt < 0) throw new Error('not a V8 heap snapshot: node_fields lacks type, name or self_size');
  const objectType = types.indexOf('object');
  const nativeType = types.indexOf('native');
  const byConstructor = new Map<string, ConstructorCount>();
  let totalBytes = 0;
  const { nodes, strings } = raw;
  for (let i = 0; i < nodes.length; i += width) {
    const size = nodes[i + sizeAt]!;
    totalBytes += size;
    const type = nodes[i + typeAt]!;
    if (type !== objectType && type !== nativeType) continue;
    const name = strings[nodes[i + nameAt]!]!;
    const entry = byConstructor.get(name);
    if (entry) {
      entry.count++;
      entry.bytes += size;
    } else byConstructor.set(name, { count: 1, bytes: size });
  }
  return { totalBytes, byConstructor };
}

/** How many objects of `name` a summary holds (0 when none). */
export function countOf(summary: HeapSummary, name: string): number {
  return summary.byConstructor.get(name)?.count ?? 0;
}
