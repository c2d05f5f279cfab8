// An in-memory model of network namespaces behind a Runner, for unit tests of director and
// real-server preparation. It understands exactly the commands those modules issue and fails the
// way the real tools do (ip's "does not exist", "File exists", "Unknown device type"; sysctl's
// missing keys), so tests can assert end state instead of call order.
import { CommandError, type ExecResult, type Runner } from '../../exec.ts';

export interface FakeAddr { address: string; prefixLen: number; label?: string; scope: string; metric?: number }
export interface FakeLink { name: string; kind?: string; up: boolean; alias: string; addrs: FakeAddr[] }

export class FakeNetns {
  links = new Map<string, FakeLink>();
  sysctls = new Map<string, string>();
  /** nft tables by "family name" -> the text that was loaded for them. */
  nft = new Map<string, string>();
  /** IPv6 proxy-NDP entries, "address%device". */
  proxies = new Set<string>();
  /** Gratuitous ARPs / unsolicited NAs sent, "address%device". */
  announced: string[] = [];

  constructor() {
    this.links.set('lo', { name: 'lo', up: false, alias: '', addrs: [{ address: '127.0.0.1', prefixLen: 8, label: 'lo', scope: 'host' }] });
    for (const dev of ['all', 'default', 'lo']) {
      this.sysctls.set(`net.ipv4.conf.${dev}.arp_ignore`, '0');
      this.sysctls.set(`net.ipv4.conf.${dev}.arp_announce`, '0');
      this.sysctls.set(`net.ipv4.conf.${dev}.rp_filter`, dev === 'lo' ? '0' : '2');
    }
    this.sysctls.set('net.ipv4.ip_forward', '0');
    this.sysctls.set('net.ipv6.conf.all.forwarding', '0');
  }

  addLink(name: string, kind: string, up = false): FakeLink {
    const link: FakeLink = { name, kind, up, alias: '', addrs: [] };
    this.links.set(name, link);
    for (const s of ['arp_ignore', 'arp_announce', 'rp_filter']) this.sysctls.set(`net.ipv4.conf.${name}.${s}`, this.sysctls.get(`net.ipv4.conf.default.${s}`) ?? '0');
    // The kernel's defaults for a new device.
    for (const [k, v] of [['forwarding', '0'], ['proxy_ndp', '0'], ['accept_ra', '1']]) this.sysctls.set(`net.ipv6.conf.${name}.${k}`, v!);
    this.sysctls.set(`net.ipv6.neigh.${name}.proxy_delay`, '80');
    return link;
  }

  deleteLink(name: string): void {
    this.links.delete(name);
    for (const k of [...this.sysctls.keys()]) if (k.includes(`.${name}.`)) this.sysctls.delete(k);
    for (const p of [...this.proxies]) if (p.endsWith(`%${name}`)) this.proxies.delete(p);
  }
}

export interface FakeKernelOptions {
  /** Kernel has the ipip module (loadable). */
  ipip?: boolean;
  /** ipip module already loaded (tunl0 present in every namespace). */
  ipipLoaded?: boolean;
  /** IPVS module loaded (net.ipv4.vs.* exist). */
  ipvs?: boolean;
  /** net.core.fb_tunnels_only_for_init_net=1: only the initial namespace gets a fallback tunl0. */
  fbTunnelsOnlyInitNet?: boolean;
  /** Kernel has ip6_tunnel and sit (loadable; default true). */
  tunnels6?: boolean;
}

/** link kind -> [module, fallback device] of the tunnels the fake knows. */
const FAKE_TUNNELS: Record<string, [string, string]> = { ipip: ['ipip', 'tunl0'], ip6tnl: ['ip6_tunnel', 'ip6tnl0'], sit: ['sit', 'sit0'] };

export class FakeKernel {
  readonly namespaces = new Map<string, FakeNetns>();
  readonly calls: string[][] = [];
  ipip: boolean;
  ipipLoaded = false;
  ipvs: boolean;
  fbTunnelsOnlyInitNet: boolean;
  tunnels6: boolean;
  /** Loaded tunnel link kinds besides ipip (ip6tnl, sit). */
  readonly loaded6 = new Set<string>();

  constructor(opts: FakeKernelOptions = {}) {
    this.ipip = opts.ipip ?? true;
    this.tunnels6 = opts.tunnels6 ?? true;
    this.fbTunnelsOnlyInitNet = opts.fbTunnelsOnlyInitNet ?? false;
    this.ipvs = opts.ipvs ?? true;
    this.ns('host');
    if (opts.ipipLoaded) this.loadIpip();
  }

  /** The namespace at a netns path ("host" for the initial one), created on first use. */
  ns(path: string): FakeNetns {
    let ns = this.namespaces.get(path);
    if (!ns) {
      ns = new FakeNetns();
      if (path === 'host' || !this.fbTunnelsOnlyInitNet) {
        if (this.ipipLoaded) ns.addLink('tunl0', 'ipip');
        for (const kind of this.loaded6) ns.addLink(FAKE_TUNNELS[kind]![1], kind);
      }
      if (this.ipvs) FakeKernel.addIpvsSysctls(ns);
      this.namespaces.set(path, ns);
    }
    return ns;
  }

  static addIpvsSysctls(ns: FakeNetns): void {
    // sync_threshold reads back as the kernel prints it: two numbers, tab-separated.
    for (const [k, v] of [['conntrack', '0'], ['expire_nodest_conn', '0'], ['conn_reuse_mode', '1'], ['expire_quiescent_template', '0'],
      ['sync_threshold', '3\t50'], ['sync_refresh_period', '0'], ['sync_version', '1']] as const) {
      ns.sysctls.set(`net.ipv4.vs.${k}`, v);
    }
  }

  loadIpip(): void {
    this.loadTunnel('ipip');
  }

  /** Load a tunnel module: its fallback device appears in every namespace that gets one. */
  loadTunnel(kind: string): void {
    if (kind === 'ipip') this.ipipLoaded = true;
    else this.loaded6.add(kind);
    const device = FAKE_TUNNELS[kind]![1];
    for (const [path, ns] of this.namespaces) {
      if (!ns.links.has(device) && (path === 'host' || !this.fbTunnelsOnlyInitNet)) ns.addLink(device, kind);
    }
  }

  /** Does the kernel have (loadable) support for this tunnel kind? */
  hasTunnel(kind: string): boolean {
    return kind === 'ipip' ? this.ipip : this.tunnels6 && kind in FAKE_TUNNELS;
  }

  isLoaded(kind: string): boolean {
    return kind === 'ipip' ? this.ipipLoaded : this.loaded6.has(kind);
  }

  runner(): Runner {
    return async (cmd, args, opts) => {
      this.calls.push([cmd, ...args]);
      let path = 'host';
      let argv = [cmd, ...args];
      if (cmd === 'nsenter') {
        const net = args.find((a) => a.startsWith('--net='));
        const dash = args.indexOf('--');
        if (!net || dash < 0) return fail(argv, 'nsenter: bad usage');
        path = net.slice('--net='.length);
        argv = args.slice(dash + 1);
      }
      return this.exec(this.ns(path), argv, opts?.input ?? '');
    };
  }

  private exec(ns: FakeNetns, argv: string[], input: string): ExecResult {
    const [cmd, ...a] = argv;
    if (cmd === 'ip') return ipCommand(this, ns, argv, a, input);
    if (cmd === 'sysctl') return sysctlCommand(ns, argv, a);
    if (cmd === 'modprobe') {
      const kind = Object.keys(FAKE_TUNNELS).find((k) => FAKE_TUNNELS[k]![0] === a.at(-1));
      if (kind && this.hasTunnel(kind)) { this.loadTunnel(kind); return ok(); }
      return fail(argv, `modprobe: FATAL: Module ${a.at(-1)} not found`);
    }
    if (cmd === 'nft') return nftCommand(ns, argv, a, input);
    if (cmd === 'arping' || cmd === 'ndptool') return announceCommand(ns, argv, a);
    return fail(argv, `${cmd}: command not found`, 127);
  }
}

function ok(stdout = ''): ExecResult { return { stdout, stderr: '' }; }
function fail(argv: string[], stderr: string, code = 1): never { throw new CommandError(argv, code, null, '', `${stderr}\n`); }

function ipCommand(k: FakeKernel, ns: FakeNetns, argv: string[], a: string[], input: string): ExecResult {
  const dev = (name: string | undefined) => {
    const l = name ? ns.links.get(name) : undefined;
    if (!l) fail(argv, `Cannot find device "${name}"`);
    return l;
  };
  const at = (word: string) => (a.includes(word) ? a[a.indexOf(word) + 1] : undefined);
  if (a[0] === '-batch') {
    for (const line of input.split('\n').filter((l) => l.trim())) {
      const words = [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
      try { ipCommand(k, ns, ['ip', ...words], words, ''); } catch (err) {
        fail(argv, `${(err as CommandError).stderr.trim()}\nCommand failed -:${line}`);
      }
    }
    return ok();
  }
  if (a[0] === '-j' && a.includes('show') && !a.includes('dev')) return ok(JSON.stringify([...ns.links.values()].map(linkJson)));
  if (a[0] === '-j' && a.includes('show')) {
    const name = at('dev');
    const l = name ? ns.links.get(name) : undefined;
    if (!l) fail(argv, `Device "${name}" does not exist.`);
    return ok(JSON.stringify([linkJson(l)]));
  }
  if (a[0] === 'link' && a[1] === 'add') {
    const name = at('name') ?? a[2]!, type = at('type');
    if (ns.links.has(name)) fail(argv, 'RTNETLINK answers: File exists');
    if (type && type in FAKE_TUNNELS) {
      if (!k.hasTunnel(type)) fail(argv, 'Error: Unknown device type.');
      if (!k.isLoaded(type)) { k.loadTunnel(type); if (ns.links.has(name)) fail(argv, 'RTNETLINK answers: File exists'); }
    } else if (type !== 'dummy') fail(argv, 'Error: Unknown device type.');
    ns.addLink(name, type!);
    return ok();
  }
  if (a[0] === 'link' && a[1] === 'del') { dev(at('dev')); ns.deleteLink(at('dev')!); return ok(); }
  if (a[0] === 'link' && a[1] === 'set') {
    const l = dev(at('dev'));
    if (a.includes('alias')) l.alias = at('alias') ?? '';
    if (a.includes('up')) l.up = true;
    if (a.includes('down')) l.up = false;
    return ok();
  }
  if (a[0] === 'addr' && (a[1] === 'add' || a[1] === 'del')) {
    const [address, len] = a[2]!.split('/');
    const l = dev(at('dev'));
    const i = l.addrs.findIndex((x) => x.address === address && x.prefixLen === Number(len));
    if (a[1] === 'add') {
      if (i >= 0) fail(argv, 'RTNETLINK answers: File exists');
      const addr: FakeAddr = { address: address!, prefixLen: Number(len), scope: 'global' };
      if (!address!.includes(':')) addr.label = a.includes('label') ? at('label')! : l.name;
      else if (a.includes('label')) fail(argv, 'Error: Label is not supported for IPv6 addresses.');
      if (a.includes('metric')) addr.metric = Number(at('metric'));
      l.addrs.push(addr);
    } else {
      if (i < 0) fail(argv, 'RTNETLINK answers: Cannot assign requested address');
      l.addrs.splice(i, 1);
    }
    return ok();
  }
  if (a.join(' ') === '-6 -j neigh show proxy') {
    return ok(JSON.stringify([...ns.proxies].map((p) => ({ dst: p.split('%')[0], dev: p.split('%')[1], proxy: null }))));
  }
  if (a[0] === 'neigh' && a[2] === 'proxy' && (a[1] === 'add' || a[1] === 'del')) {
    dev(at('dev'));
    const key = `${a[3]}%${at('dev')}`;
    if (a[1] === 'add' && ns.proxies.has(key)) fail(argv, 'RTNETLINK answers: File exists');
    if (a[1] === 'del' && !ns.proxies.has(key)) fail(argv, 'RTNETLINK answers: No such file or directory');
    if (a[1] === 'add') ns.proxies.add(key); else ns.proxies.delete(key);
    return ok();
  }
  return fail(argv, `fake ip: unsupported ${a.join(' ')}`);
}

/** arping -U … -I DEV -s VIP VIP and ndptool -t na -U -i DEV -T VIP send: recorded; the device must be up. */
function announceCommand(ns: FakeNetns, argv: string[], a: string[]): ExecResult {
  const at = (word: string) => (a.includes(word) ? a[a.indexOf(word) + 1] : undefined);
  const device = argv[0] === 'arping' ? at('-I') : at('-i');
  const address = argv[0] === 'arping' ? at('-s') : at('-T');
  const l = device ? ns.links.get(device) : undefined;
  if (!l || !l.up) fail(argv, argv[0] === 'arping' ? `arping: Interface "${device}" is down` : `Failed to send message: No such device`, 2);
  ns.announced.push(`${address}%${device}`);
  return ok();
}

function linkJson(l: FakeLink): object {
  return {
    ifname: l.name,
    flags: l.up ? ['UP', 'LOWER_UP'] : [],
    ...(l.alias ? { ifalias: l.alias } : {}),
    ...(l.kind ? { linkinfo: { info_kind: l.kind } } : {}),
    addr_info: l.addrs.map((x) => ({
      family: x.address.includes(':') ? 'inet6' : 'inet', local: x.address, prefixlen: x.prefixLen, scope: x.scope,
      ...(x.label ? { label: x.label } : {}),
      ...(x.metric !== undefined ? { metric: x.metric } : {}),
    })),
  };
}

function sysctlCommand(ns: FakeNetns, argv: string[], a: string[]): ExecResult {
  if (a.includes('-w')) {
    for (const kv of a.filter((x) => x.includes('='))) {
      const [key, value] = kv.split('=') as [string, string];
      if (!ns.sysctls.has(key)) fail(argv, `sysctl: cannot stat /proc/sys/${key.replace(/\./g, '/')}: No such file or directory`, 255);
      ns.sysctls.set(key, value);
    }
    return ok();
  }
  const keys = a.filter((x) => !x.startsWith('-'));
  return ok(keys.filter((key) => ns.sysctls.has(key)).map((key) => `${key} = ${ns.sysctls.get(key)}\n`).join(''));
}

/**
 * Enough of nft for the director: `-f -` transactions of "table F N {}; delete table F N; table F N
 * {...}" and "add rule F N CHAIN RULE" (appended at the end of the chain, as nft does). A file is
 * one transaction: when a command fails, nothing of it is applied.
 */
function nftCommand(ns: FakeNetns, argv: string[], a: string[], input: string): ExecResult {
  if (a[0] === '-f') {
    const staged = new Map(ns.nft);
    nftFile(staged, argv, input);
    ns.nft.clear();
    for (const [k, v] of staged) ns.nft.set(k, v);
    return ok();
  }
  if (a[0] === 'list' && a[1] === 'table') {
    const text = ns.nft.get(`${a[2]} ${a[3]}`);
    if (text === undefined) fail(argv, 'Error: No such file or directory', 1);
    return ok(text);
  }
  return fail(argv, `fake nft: unsupported ${a.join(' ')}`);
}

function nftFile(nft: Map<string, string>, argv: string[], input: string): void {
  const re = /^(table|delete table) (\w+) (\w+)( \{)?/;
  const lines = input.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const rule = /^add rule (\w+) (\w+) (\w+) (.+)$/.exec(lines[i]!);
    if (rule) {
      const text = nft.get(`${rule[1]} ${rule[2]}`);
      const end = text?.lastIndexOf('\t}\n}');
      if (text === undefined || end === undefined || end < 0 || !text.includes(`chain ${rule[3]} {`)) fail(argv, `Error: No such file or directory\n${lines[i]}`, 1);
      nft.set(`${rule[1]} ${rule[2]}`, `${text.slice(0, end)}\t\t${rule[4]}\n${text.slice(end)}`);
      continue;
    }
    const m = re.exec(lines[i]!);
    if (!m) continue;
    const key = `${m[2]} ${m[3]}`;
    if (m[1] === 'delete table') { nft.delete(key); continue; }
    const body: string[] = [lines[i]!];
    let depth = (lines[i]!.match(/\{/g) ?? []).length - (lines[i]!.match(/\}/g) ?? []).length;
    while (depth > 0 && ++i < lines.length) {
      body.push(lines[i]!);
      depth += (lines[i]!.match(/\{/g) ?? []).length - (lines[i]!.match(/\}/g) ?? []).length;
    }
    const text = body.join('\n') + '\n';
    if (!nft.has(key) || !/\{\}\s*$/.test(text)) nft.set(key, text.endsWith('{}\n') ? `table ${key} {\n}\n` : text);
  }
}
