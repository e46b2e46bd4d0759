// herd's browser SDK as an ES module, for sites that bundle their scripts:
//
//   import { createHerd } from '@herdhq/sdk-js';
//   const herd = createHerd({ writeKey: 'KEY', apiHost: 'https://collect.example.com' });
//   herd.track('Signed Up', { plan: 'pro' });
export { createHerd, VERSION } from './herd.js';
