/**
 * v3 onion address validation now lives in the kernel's protocol layer (`src/protocol/onion.ts`),
 * because the kernel checks every `.onion` CONNECT whether or not this plugin is on (issue #10).
 * Re-exported here for code that imported it from the plugin.
 * @packageDocumentation
 */
export { base32Decode, isValidOnion, onionAddressFromKey, onionProblem } from 'socksmith';
