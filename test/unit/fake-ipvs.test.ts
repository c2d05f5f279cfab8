// The fake kernel must fail the way ip_vs_ctl.c does, or unit tests of the sync would pass against
// behaviour the real kernel does not have.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FakeIpvsKernel } from '../../dataplane/ipvs/testing/fake.ts';
import { IpvsError } from '../../dataplane/ipvs/errors.ts';
import type { IpvsDestination, IpvsService } from '../../dataplane/ipvs/types.ts';

const test = suite('fake ipvs kernel');

const svc = (over: Partial<IpvsService> = {}): IpvsService => ({
  family: 4, protocol: 'TCP', address: '203.0.113.10', port: 80, scheduler: 'wlc', flags: 0, timeout: 0,
  netmask: '255.255.255.255', ...over,
});
const dest = (over: Partial<IpvsDestination> = {}): IpvsDestination => ({
  family: 4, address: '10.0.0.1', port: 8080, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0, ...over,
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, IpvsError);
    return (err as IpvsError).code;
  }
  return 'no error';
}

test('services: EEXIST on add twice, ESRCH on update/delete of a missing one, ENOENT on unknown scheduler', async () => {
  const k = new FakeIpvsKernel();
  await k.addService(svc());
  assert.is(await code(k.addService(svc({ scheduler: 'rr' }))), 'EEXIST');
  assert.is(await code(k.updateService(svc({ port: 81 }))), 'ESRCH');
  assert.is(await code(k.deleteService(svc({ port: 81 }))), 'ESRCH');
  assert.is(await code(k.addService(svc({ port: 81, scheduler: 'nosuch' }))), 'ENOENT');
  assert.is(await code(k.updateService(svc({ scheduler: 'nosuch' }))), 'ENOENT');
  assert.is(await code(k.addService(svc({ family: 6, address: '2001:db8::1', netmask: '0' }))), 'EINVAL');
  const [only] = await k.dump();
  assert.is(only?.service.scheduler, 'wlc', 'failed calls change nothing');
  assert.is((await k.dump()).length, 1);
});

test('services: an edit keeps destinations and counters; flags read back without HASHED', async () => {
  const k = new FakeIpvsKernel();
  await k.addService(svc({ flags: 0x1, timeout: 300 }));
  await k.addDestination(svc(), dest());
  k.setConnections('TCP/203.0.113.10:80', '10.0.0.1:8080', { active: 3 });
  await k.updateService(svc({ scheduler: 'sh', flags: 0x8 }));
  const [s] = await k.dump();
  assert.is(s?.service.flags, 0x8);
  assert.is(s?.service.scheduler, 'sh');
  assert.is(s?.destinations[0]?.stats?.activeConns, 3);
});

test('destinations: ESRCH without service, EEXIST twice, ENOENT when missing, EINVAL when not unicast', async () => {
  const k = new FakeIpvsKernel();
  assert.is(await code(k.addDestination(svc(), dest())), 'ESRCH');
  await k.addService(svc());
  await k.addDestination(svc(), dest());
  assert.is(await code(k.addDestination(svc(), dest({ weight: 5 }))), 'EEXIST');
  assert.is(await code(k.updateDestination(svc(), dest({ port: 9 }))), 'ENOENT');
  assert.is(await code(k.deleteDestination(svc(), dest({ port: 9 }))), 'ENOENT');
  assert.is(await code(k.deleteDestination(svc({ port: 1 }), dest())), 'ESRCH');
  for (const address of ['0.0.0.0', '224.0.0.5', '255.255.255.255']) {
    assert.is(await code(k.addDestination(svc(), dest({ address }))), 'EINVAL', address);
  }
  assert.is(await code(k.addDestination(svc(), dest({ weight: -1, port: 1 }))), 'ERANGE');
  assert.is(await code(k.addDestination(svc(), dest({ lowerThreshold: 5, upperThreshold: 2, port: 1 }))), 'ERANGE');
  assert.equal((await k.dump())[0]?.destinations.map((d) => d.port), [8080]);
});

test('destinations: another family only with tunnel forwarding; gue needs a port', async () => {
  const k = new FakeIpvsKernel();
  await k.addService(svc());
  const v6 = dest({ family: 6, address: '2001:db8::5' });
  assert.is(await code(k.addDestination(svc(), v6)), 'EINVAL');
  assert.is(await code(k.addDestination(svc(), dest({ forward: 'tunnel', tunnelType: 'gue', tunnelPort: 0 }))), 'EINVAL');
  await k.addDestination(svc(), { ...v6, forward: 'tunnel' });
  const s6 = svc({ family: 6, address: '2001:DB8:0::1', netmask: '128' });
  await k.addService(s6);
  for (const address of ['::', 'ff02::1', 'fe80::1']) {
    assert.is(await code(k.addDestination(s6, dest({ family: 6, address }))), 'EINVAL', address);
  }
  const keys = (await k.dump()).map((s) => `${s.service.address}:${s.destinations.map((d) => d.address).join(',')}`);
  assert.equal(keys, ['203.0.113.10:2001:db8::5', '2001:db8::1:'], 'addresses read back canonical');
});

test('updates keep counters and identity; delete and re-add gives a new object', async () => {
  const k = new FakeIpvsKernel();
  await k.addService(svc());
  await k.addDestination(svc(), dest());
  const id = k.objectId('TCP/203.0.113.10:80', '10.0.0.1:8080');
  k.setConnections('TCP/203.0.113.10:80', '10.0.0.1:8080', { active: 2, inactive: 7 });
  await k.updateDestination(svc(), dest({ weight: 9 }));
  assert.is(k.objectId('TCP/203.0.113.10:80', '10.0.0.1:8080'), id);
  const d = (await k.dump())[0]?.destinations[0];
  assert.is(d?.weight, 9);
  assert.is(d?.stats?.inactiveConns, 7);
  await k.deleteDestination(svc(), dest());
  await k.addDestination(svc(), dest());
  assert.is.not(k.objectId('TCP/203.0.113.10:80', '10.0.0.1:8080'), id);
  assert.is((await k.dump())[0]?.destinations[0]?.stats?.activeConns, 0);
});

test('injected failures match op, service and destination, and can be transient', async () => {
  const k = new FakeIpvsKernel();
  k.fail('addService', 'ENOMEM', { key: 'TCP/203.0.113.10:81', times: 1 });
  await k.addService(svc());
  assert.is(await code(k.addService(svc({ port: 81 }))), 'ENOMEM');
  await k.addService(svc({ port: 81 }));
  k.fail('dump', 'EIO');
  assert.is(await code(k.dump()), 'EIO');
  k.clearFailures();
  assert.is((await k.dump()).length, 2);
  assert.is(k.mutations, 2);
});

test('timeouts: zero leaves a value unchanged', async () => {
  const k = new FakeIpvsKernel();
  await k.setTimeouts({ tcp: 0, tcpFin: 0, udp: 30 });
  assert.equal(await k.getTimeouts(), { tcp: 900, tcpFin: 120, udp: 30 });
  await k.close();
  assert.is(await code(k.dump()), 'EBADF');
});

test.run();
