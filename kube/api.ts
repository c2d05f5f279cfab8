// The small interface between the controller and the Kubernetes API. rest.ts implements it over
// HTTP; fake.ts implements it in memory for unit tests. Everything above this line (informers,
// status writer, events, leader election) is written against KubeApi only.
import type { Reachability } from './reachability.ts';
import type { KubeObject, ResourceType, StatusObject } from './types.ts';

export interface ListOptions {
  /** Page size; the server returns a continue token when more remain. */
  limit?: number;
  continue?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface ListPage<T extends KubeObject = KubeObject> {
  items: T[];
  /** The list's resourceVersion: where a watch picks up after this list. */
  resourceVersion: string;
  continue?: string;
}

export interface WatchOptions {
  resourceVersion: string;
  /** Server-side timeout; the server ends the stream cleanly after it. */
  timeoutSeconds?: number;
  allowWatchBookmarks?: boolean;
  labelSelector?: string;
  fieldSelector?: string;
}

export type WatchEvent =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; object: KubeObject }
  | { type: 'ERROR'; object: StatusObject };

export interface KubeApi {
  /** Whether the server answers, as seen by every request of this client (see reachability.ts). */
  readonly reachability?: Reachability;
  list(rt: ResourceType, opts?: ListOptions, signal?: AbortSignal): Promise<ListPage>;
  /**
   * Streams events to onEvent, one complete event at a time, in order. Resolves when the server
   * ends the stream; rejects with a KubeApiError when the request fails or the connection breaks
   * (a half-received event is never delivered).
   */
  watch(rt: ResourceType, opts: WatchOptions, onEvent: (e: WatchEvent) => void, signal?: AbortSignal): Promise<void>;
  get<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, signal?: AbortSignal): Promise<T>;
  create<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, obj: T, signal?: AbortSignal): Promise<T>;
  /** PUT; the object's metadata.resourceVersion makes it conditional (409 when stale). */
  replace<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, obj: T, signal?: AbortSignal): Promise<T>;
  /** DELETE; with resourceVersion, only that version of the object (409 when it changed). */
  delete(rt: ResourceType, namespace: string | undefined, name: string, opts?: { resourceVersion?: string }, signal?: AbortSignal): Promise<void>;
  /**
   * JSON merge patch of the status subresource. A metadata.resourceVersion in the patch makes
   * it conditional (409 when stale).
   */
  patchStatus<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, patch: object, signal?: AbortSignal): Promise<T>;
  /**
   * Server-side apply to the status subresource as `fieldManager` (forced: the manager takes the
   * fields it sends). With list-map fields (status.nodes) each manager owns only its own entries.
   */
  applyStatus<T extends KubeObject>(rt: ResourceType, namespace: string | undefined, name: string, obj: object, fieldManager: string, signal?: AbortSignal): Promise<T>;
}
