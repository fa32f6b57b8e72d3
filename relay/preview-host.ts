// Minimal version; the full preview proxy replaces this file.
export interface PreviewTarget { tunnelId: string; port: number }
export function parsePreviewHost(host: string, domain: string): PreviewTarget | null {
  const h = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
  if (!h.endsWith(`.${domain}`)) return null;
  const m = /^([1-9]\d{0,4})-([a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?)$/.exec(h.slice(0, -domain.length - 1));
  return m ? { port: Number(m[1]), tunnelId: m[2]! } : null;
}
