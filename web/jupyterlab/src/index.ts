/**
 * nib-jupyterlab: registers nib's inline completion provider with JupyterLab's completer
 * (JupyterLab >= 4.1) and a status bar item. The engine runs in nib-complete's module worker,
 * which this labextension ships as static files (static/nib/, see webpack.config.js).
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ICompletionProviderManager } from "@jupyterlab/completer";
import { PageConfig } from "@jupyterlab/coreutils";
import { ISettingRegistry } from "@jupyterlab/settingregistry";
import { IStatusBar } from "@jupyterlab/statusbar";
import { NibProvider } from "./provider.js";
import { readSettings } from "./settings.js";
import { NibStatus } from "./status.js";

/** Where webpack loaded this bundle from: the labextension's static/ folder. */
declare const __webpack_public_path__: string;

const PLUGIN_ID = "nib-jupyterlab:plugin";

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "nib: private code completion in the browser, as an inline completion provider.",
  autoStart: true,
  requires: [ICompletionProviderManager, ISettingRegistry],
  optional: [IStatusBar],
  activate: (_app: JupyterFrontEnd, manager: ICompletionProviderManager, registry: ISettingRegistry, statusBar: IStatusBar | null) => {
    const status = new NibStatus();
    statusBar?.registerStatusItem("nib-jupyterlab:status", { item: status, align: "left", rank: 100 });
    const provider = new NibProvider({
      baseUrl: PageConfig.getBaseUrl(),
      workerUrl: new URL("nib/worker.js", new URL(__webpack_public_path__, document.baseURI)).href,
      onStatus: (s) => status.show_(s),
    });
    // Registered at once: the completer reads the providers when the app is restored.
    manager.registerInlineProvider(provider);
    const apply = (s: ISettingRegistry.ISettings) => {
      try {
        provider.setSettings(readSettings(s.composite as Record<string, unknown>));
      } catch (e) {
        provider.setSettings(null, `settings: ${(e as Error).message}`);
      }
    };
    registry
      .load(PLUGIN_ID)
      .then((s) => {
        apply(s);
        s.changed.connect(apply);
      })
      .catch((e: unknown) => provider.setSettings(null, `settings: ${String(e)}`));
  },
};

export default plugin;
