// Usage: node send.mjs HOST WRITE_KEY PREFIX
// Sends track, identify and page through both libraries with messageIds
// PREFIX-<library>-<call>, flushes, and exits non-zero on any error.
import { Analytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';

const [host, key, prefix] = process.argv.slice(2);
const fail = (what, err) => { console.error(what, err); process.exit(1); };

const seg = new Analytics({ writeKey: key, host, path: '/v1/batch', flushAt: 10, flushInterval: 200, maxRetries: 2 });
seg.on('error', (err) => fail('segment', err));
seg.track({ userId: 'seg-user', event: 'Segment Track', properties: { plan: 'pro' }, messageId: `${prefix}-segment-track` });
seg.identify({ userId: 'seg-user', traits: { email: 'seg@example.com' }, messageId: `${prefix}-segment-identify` });
seg.page({ userId: 'seg-user', name: 'Pricing', properties: { url: 'https://example.com/pricing' }, messageId: `${prefix}-segment-page` });
await seg.closeAndFlush({ timeout: 10000 });

const rudder = new RudderAnalytics(key, { dataPlaneUrl: host, flushAt: 10, flushInterval: 200, maxRetries: 2, gzip: true, logLevel: 'error' });
const done = (err) => { if (err) fail('rudder', err); };
rudder.track({ userId: 'rs-user', event: 'Rudder Track', properties: { plan: 'team' }, messageId: `${prefix}-rudder-track` }, done);
rudder.identify({ userId: 'rs-user', traits: { email: 'rs@example.com' }, messageId: `${prefix}-rudder-identify` }, done);
rudder.page({ userId: 'rs-user', name: 'Docs', properties: { url: 'https://example.com/docs' }, messageId: `${prefix}-rudder-page` }, done);
await new Promise((resolve, reject) => rudder.flush((err) => (err ? reject(err) : resolve())));
console.log('sent');
