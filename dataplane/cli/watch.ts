// Watching manifest paths for `lvs-agent apply --watch`. fs.watch is inotify on Linux, and inotify
// watches an inode, not a path: an editor or tool that saves by writing a new file and renaming it
// over the old one (vim with backupcopy=no, `sed -i`, most atomic writers) leaves the watch on the
// replaced inode, which is unlinked and never changes again (the kernel sends it IN_ATTRIB for the
// link count, then IN_DELETE_SELF and IN_IGNORED). So after every event on a watched file the path
// is looked up again, and when it names another inode (or nothing, mid-save) the watch is re-armed
// on the path. A watched directory is left as it is: its own inode does not change when the files
// in it are replaced, and inotify reports those as entry events.
import { statSync, watch, type FSWatcher } from 'node:fs';

export interface PathWatch {
  close(): void;
}

/** Calls onChange after any change to any of paths, following files replaced by rename. */
export function watchPaths(paths: readonly string[], onChange: () => void, retryMs = 100): PathWatch {
  const closers = paths.map((p) => watchOne(p, onChange, retryMs));
  return { close: () => { for (const c of closers) c(); } };
}

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

function watchOne(path: string, onChange: () => void, retryMs: number): () => void {
  let watcher: FSWatcher | undefined;
  let ino: number | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;

  /** Watches the path; notify: report a change once it is watched again (the file was replaced). */
  const arm = (notify: boolean): void => {
    retry = undefined;
    if (closed) return;
    try {
      const isDir = statSync(path).isDirectory();
      ino = inodeOf(path);
      watcher = watch(path, () => { onChange(); if (!isDir) recheck(); });
      watcher.on('error', () => rearm());
    } catch {
      // Not there (between an editor's unlink and rename) or not readable yet: try again.
      retry = setTimeout(() => arm(notify), retryMs);
      return;
    }
    if (notify) onChange();
  };
  const rearm = (): void => {
    watcher?.close();
    watcher = undefined;
    if (!closed && !retry) retry = setTimeout(() => arm(true), 0);
  };
  const recheck = (): void => {
    if (inodeOf(path) !== ino) rearm();
  };
  arm(false);
  return () => {
    closed = true;
    clearTimeout(retry);
    watcher?.close();
  };
}
