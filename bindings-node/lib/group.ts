// Group membership: joining on probation, watching a group.

import type { ClientLink } from './client';
import { call } from './errors';
import type { MemberPromotedEvent, MemberRemovedEvent, Member, ViewChangedEvent } from './events';
import { OwnedHandle, PendingWatch } from './handle';
import type { NativeGroupWatch, NativeMembership, NativeView } from './native';
import * as v from './validate';

/** A group's view: its number (strictly increasing) and its members in id order. */
export interface View {
  number: bigint;
  members: Member[];
}

/** The events of a {@link Membership} or {@link GroupWatch}, in view order. */
export interface GroupEvents {
  /** The view changed; the first event after the object is created carries the current view. */
  viewChanged: ViewChangedEvent;
  /** A probationary member was promoted to full member. */
  memberPromoted: MemberPromotedEvent;
  /** A member left the group (removed, failed its evaluation, or its session ended). */
  memberRemoved: MemberRemovedEvent;
}

const NO_VIEW: NativeView = { number: 0n, members: [] };

/**
 * This client's membership in a group, from {@link Client.join}: it starts probationary and
 * is promoted to full member or removed. Emits the {@link GroupEvents}. It ends with
 * {@link Membership.leave}, when the client is closed, or when the session expires.
 */
export class Membership extends OwnedHandle<NativeMembership, GroupEvents> {
  #memberId: string;

  private constructor(n: NativeMembership, memberId: string, link: ClientLink) {
    super(n, link);
    this.#memberId = memberId;
  }

  /** @internal */
  static _new(n: NativeMembership, memberId: string, link: ClientLink): Membership {
    return new Membership(n, memberId, link);
  }

  /** The group's name. */
  get group(): string {
    return this.native.group;
  }

  /** This member's id. */
  get memberId(): string {
    return this.#memberId;
  }

  /** The view as last told. */
  get view(): View {
    return this.native.view;
  }

  /** True while this process is a member (probationary or full) by the client's own deadline. */
  get isMember(): boolean {
    return this.native.isMember;
  }

  /** True while this process is a full member. */
  get isFull(): boolean {
    return this.native.isFull;
  }

  /**
   * Reports the application's evaluation of this probationary member: a pass lets the
   * service promote it once its probation has passed; a failure removes it.
   */
  async reportCheck(ok: boolean): Promise<void> {
    v.bool('ok', ok);
    await call(this.native.reportCheck(ok));
  }

  /** Leaves the group and waits for the service to confirm. Idempotent. */
  leave(): Promise<void> {
    return this.end();
  }

  /** @internal */
  protected giveUp(): Promise<void> {
    return this.native.leave();
  }
}

/**
 * A watch on a group's views without membership, from {@link Client.watchGroup}. Emits the
 * {@link GroupEvents}, first the current view once {@link GroupWatch.ready}. It carries over
 * to the client's next session after an expiry.
 */
export class GroupWatch extends PendingWatch<NativeGroupWatch, GroupEvents> {
  #group: string;

  private constructor(group: string, pending: Promise<NativeGroupWatch>, link: ClientLink) {
    super('group watch', pending, link);
    this.#group = group;
  }

  /** @internal */
  static _new(group: string, pending: Promise<NativeGroupWatch>, link: ClientLink): GroupWatch {
    return new GroupWatch(group, pending, link);
  }

  /** The group's name. */
  get group(): string {
    return this.#group;
  }

  /** The view as last told (empty before `ready`). */
  get view(): View {
    return this.native?.view ?? NO_VIEW;
  }
}
