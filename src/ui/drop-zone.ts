// A keyboard-reachable drop zone for files and folders, shared by the Data and Predict steps.
export type PathFile = { path: string; file: File };

/** Walks dropped entries (folders included) into files with their relative paths. */
export async function filesFromEntries(entries: FileSystemEntry[]): Promise<PathFile[]> {
  const out: PathFile[] = [];
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      out.push({
        path: prefix + entry.name,
        file: await new Promise<File>((ok, fail) => (entry as FileSystemFileEntry).file(ok, fail)),
      });
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      // readEntries returns batches (about 100 entries) until an empty one.
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((ok, fail) =>
          reader.readEntries(ok, fail),
        );
        if (batch.length === 0) break;
        for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const e of entries) await walk(e, '');
  return out;
}

/** Enter/Space activates the zone (e.g. opens a picker); a drop delivers the files it held. */
export function wireDropZone(
  zone: HTMLElement,
  onActivate: () => void,
  onFiles: (files: PathFile[]) => void,
): void {
  zone.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      onActivate();
    }
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    // Entries must be taken synchronously: the DataTransfer is emptied when the handler returns.
    const entries = [...(e.dataTransfer?.items ?? [])]
      .map((i) => i.webkitGetAsEntry())
      .filter((x): x is FileSystemEntry => !!x);
    void filesFromEntries(entries).then((files) => files.length && onFiles(files));
  });
}
