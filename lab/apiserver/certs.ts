// The PKI of a throwaway control plane, made with Debian's openssl: a serving CA and the
// apiserver's serving certificate (SANs 127.0.0.1 and localhost), a separate client CA that
// kube-apiserver trusts for x509 client authentication (CN = user, O = groups), and the
// service-account key pair. EC P-256 keys throughout: generating them takes milliseconds.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const DAYS = '2';

export interface KeyPair { cert: string; key: string }

export interface Pki {
  dir: string;
  serverCa: KeyPair;
  serving: KeyPair;
  clientCa: KeyPair;
  /** service-account token signing key (private) and verification key (public), PEM paths */
  saKey: string;
  saPub: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.trim() || err.message}`);
  }
}

// A config of our own, so that the distro's openssl.cnf defaults (v3_ca on every `req -x509`)
// never turn a leaf certificate into a CA.
async function extConfig(path: string, ext: string[]): Promise<void> {
  await writeFile(path, ['[req]', 'distinguished_name = dn', '[dn]', '[ext]', ...ext, ''].join('\n'));
}

function subject(cn: string, orgs: readonly string[] = []): string {
  const esc = (s: string) => s.replace(/[\\/,+=]/g, (c) => `\\${c}`);
  return `/CN=${esc(cn)}${orgs.map((o) => `/O=${esc(o)}`).join('')}`;
}

async function issue(dir: string, name: string, subj: string, ext: string[], ca?: KeyPair): Promise<KeyPair> {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const cfg = join(dir, `${name}.cnf`);
  await extConfig(cfg, ext);
  await openssl([
    'req', '-x509', '-config', cfg, '-extensions', 'ext', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', pair.key, '-out', pair.cert, '-subj', subj, '-days', DAYS,
    ...(ca ? ['-CA', ca.cert, '-CAkey', ca.key] : []),
  ]);
  return pair;
}

function newCa(dir: string, name: string): Promise<KeyPair> {
  return issue(dir, name, subject(`lvs-operator test ${name}`), [
    'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign', 'subjectKeyIdentifier = hash',
  ]);
}

/** extraSans: more subjectAltName entries of the serving certificate, e.g. 'IP:10.96.0.1'. */
export async function makePki(dir: string, extraSans: readonly string[] = []): Promise<Pki> {
  if (extraSans.some((s) => !/^(IP:[0-9a-fA-F.:]+|DNS:[a-z0-9.-]+)$/.test(s))) throw new Error(`makePki: bad SAN in ${JSON.stringify(extraSans)}`);
  const [serverCa, clientCa] = await Promise.all([newCa(dir, 'server-ca'), newCa(dir, 'client-ca')]);
  const serving = await issue(dir, 'apiserver', subject('kube-apiserver'), [
    'basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature, keyEncipherment',
    'extendedKeyUsage = serverAuth', `subjectAltName = ${['IP:127.0.0.1', 'DNS:localhost', ...extraSans].join(', ')}`,
  ], serverCa);
  const saKey = join(dir, 'sa.key'), saPub = join(dir, 'sa.pub');
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', saKey]);
  await openssl(['pkey', '-in', saKey, '-pubout', '-out', saPub]);
  return { dir, serverCa, serving, clientCa, saKey, saPub };
}

/** A client certificate for `user` in `groups`, signed by the client CA; file names derive from `name`. */
export function clientCert(pki: Pki, name: string, user: string, groups: readonly string[]): Promise<KeyPair> {
  return issue(pki.dir, `client-${name}`, subject(user, groups), [
    'basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature, keyEncipherment',
    'extendedKeyUsage = clientAuth',
  ], pki.clientCa);
}

const b64 = async (path: string) => (await readFile(path)).toString('base64');

/** A kubeconfig with everything inline, so the file can be copied or read by any client. */
export async function kubeconfigYaml(server: string, caCert: string, client: KeyPair, user: string): Promise<string> {
  const [ca, cert, key] = await Promise.all([b64(caCert), b64(client.cert), b64(client.key)]);
  return [
    'apiVersion: v1', 'kind: Config', 'preferences: {}',
    'clusters:', '- name: lvs-test', '  cluster:', `    server: ${server}`, `    certificate-authority-data: ${ca}`,
    'users:', `- name: ${JSON.stringify(user)}`, '  user:', `    client-certificate-data: ${cert}`, `    client-key-data: ${key}`,
    'contexts:', '- name: lvs-test', '  context:', '    cluster: lvs-test', `    user: ${JSON.stringify(user)}`,
    'current-context: lvs-test', '',
  ].join('\n');
}

/** A kubeconfig authenticating with a bearer token (e.g. a service account's bound token). */
export async function tokenKubeconfigYaml(server: string, caCert: string, token: string, user: string): Promise<string> {
  const ca = await b64(caCert);
  return [
    'apiVersion: v1', 'kind: Config', 'preferences: {}',
    'clusters:', '- name: lvs-test', '  cluster:', `    server: ${server}`, `    certificate-authority-data: ${ca}`,
    'users:', `- name: ${JSON.stringify(user)}`, '  user:', `    token: ${token}`,
    'contexts:', '- name: lvs-test', '  context:', '    cluster: lvs-test', `    user: ${JSON.stringify(user)}`,
    'current-context: lvs-test', '',
  ].join('\n');
}
