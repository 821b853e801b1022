// tenure for Node.js: coordination primitives over tenure's Rust core.
//
//   const tenure = require('tenure');
//   const server = await tenure.Server.start({ listen: '127.0.0.1:0', dataDir });
//   const client = await tenure.Client.connect([server.address]);
//   const lock = await client.lock('jobs/reindex', { timeoutMs: 5000 });
//
// Conventions: blocking work runs on native threads and methods return Promises; events are
// EventEmitter events (and async iterators) whose objects have `type` and camelCase fields;
// tokens, epochs and view numbers are `bigint`; errors are `TenureError` with a stable
// `.code`, and bad arguments are `TypeError`/`RangeError`; open objects keep the process
// alive until closed or `unref()`ed. See README-section.md.

export { Server, type ServerOptions } from './server';
export {
  Client,
  Lock,
  type CampaignOptions,
  type ClientEvents,
  type ClientOptions,
  type EventsOptions,
  type JoinOptions,
  type LockEvents,
  type LockOptions,
  type RequestElectionOptions,
  type ServiceStatus,
  type SessionState,
} from './client';
export { Election, Observer, type ElectionEvents } from './election';
export { GroupWatch, Membership, type GroupEvents, type View } from './group';
export {
  Detector,
  type DetectorCounters,
  type DetectorEvents,
  type DetectorOptions,
  type DetectorStatus,
  type NetworkOptions,
  type PeerAddress,
} from './detector';
export { TenureError, codes, type TenureErrorCode } from './errors';
export { limits } from './validate';
export {
  TenureListenerWarning,
  type ClientEvent,
  type ConnectedEvent,
  type DataLostEvent,
  type DetectorEvent,
  type ExpiredEvent,
  type GroupEvent,
  type JeopardyEvent,
  type LockAcquiredEvent,
  type LockLostEvent,
  type LostReason,
  type Master,
  type MasterChangeEvent,
  type MasterChangedEvent,
  type Member,
  type MemberPromotedEvent,
  type MemberRemovedEvent,
  type NetworkDownEvent,
  type NetworkUpEvent,
  type PeerRecoveredEvent,
  type PeerSuspectedEvent,
  type RecoveredEvent,
  type TenureEvent,
  type ViewChangedEvent,
} from './events';
