// Hosts for views without a kernel: the checkpoint viewer's host knows each value's key and
// says where the data came from. (The MIME renderer uses the shared LocalHost as it is.)
import { LocalHost, type HostKey, type IDetails } from "../render/host.js";

export class ViewerHost extends LocalHost {
  private focusedNode = -1;
  private readonly detailListeners: (() => void)[] = [];

  constructor(
    private readonly keys: ReadonlyMap<number, string>,
    private readonly note: string,
  ) {
    super();
  }

  override details(): IDetails {
    const key = this.keys.get(this.focusedNode);
    return key === undefined ? {} : { node: this.focusedNode, key };
  }

  override message(): string {
    return this.note;
  }

  override update(values: Parameters<LocalHost["update"]>[0]): void {
    super.update(values);
    if (values.focused !== undefined) {
      this.focusedNode = values.focused;
      for (const f of this.detailListeners) f();
    }
  }

  override on(key: HostKey, callback: () => void): void {
    if (key === "details") this.detailListeners.push(callback);
    else super.on(key, callback);
  }
}
