// Types of dawn-env.mjs (plain JS so that scripts/bench.mjs can import it without tsx).
export declare const CHROMIUM_VULKAN_DIR: string;
export declare const SWIFTSHADER_ICD: string;
export declare function dawnEnv(env?: NodeJS.ProcessEnv): Record<string, string>;
