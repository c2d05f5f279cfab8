// metav1.LabelSelector, evaluated as the API server does: matchLabels and matchExpressions are
// ANDed; an empty selector ({}) matches everything; In/NotIn/Exists/DoesNotExist. Used for a
// VIPPool's namespaceSelector. Input is untrusted data: anything malformed matches nothing.

export interface LabelSelectorLike {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key?: string; operator?: string; values?: string[] }>;
}

export type Labels = Readonly<Record<string, string>>;

function expressionMatches(e: { key?: string; operator?: string; values?: string[] }, labels: Labels): boolean {
  if (typeof e?.key !== 'string') return false;
  const has = Object.hasOwn(labels, e.key);
  const values = Array.isArray(e.values) ? e.values : [];
  switch (e.operator) {
    case 'In': return has && values.includes(labels[e.key] as string);
    case 'NotIn': return !has || !values.includes(labels[e.key] as string);
    case 'Exists': return has;
    case 'DoesNotExist': return !has;
    default: return false;
  }
}

export function selectorMatches(selector: LabelSelectorLike | undefined, labels: Labels): boolean {
  if (!selector || typeof selector !== 'object') return false;
  const ml = selector.matchLabels ?? {};
  if (typeof ml !== 'object') return false;
  for (const [k, v] of Object.entries(ml)) if (labels[k] !== v) return false;
  const me = selector.matchExpressions ?? [];
  if (!Array.isArray(me)) return false;
  return me.every((e) => expressionMatches(e, labels));
}
