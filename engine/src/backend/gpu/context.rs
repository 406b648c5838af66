//! The device and everything shared by the launchers: adapter and device setup, the pending
//! command encoder that ops are recorded into (one submit per readback), the uniform arena for
//! per-dispatch parameters, a pool of activation buffers, the keyed pipeline cache, and the
//! counters a test prints (dispatches, submits, bytes read back).
//!
//! Natively (Vulkan) waits block: error scopes are popped and readbacks polled on the spot. In the
//! browser (WebGPU) nothing may block the worker's event loop: errors surface through the
//! device's uncaptured-error handler and [`Gpu::settle`], and results come back through
//! [`Gpu::read_async`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, GpuFailure, Result};

/// Bytes of parameters a dispatch may pass (16 words); each gets its own aligned slot.
pub const PARAM_BYTES: u64 = 64;
/// Dispatches whose parameters fit one submit; past that the pending work is submitted early.
const PARAM_SLOTS: u64 = 4096;
/// Buffers of one size class kept for reuse.
const POOL_PER_CLASS: usize = 16;
/// Bind groups kept for reuse; past this many the cache starts over (one decode step of a
/// 30-layer model uses a few hundred).
const BIND_GROUPS_KEPT: usize = 4096;
/// Features the kernels have variants for, requested where the adapter has them (SwiftShader,
/// Chromium's software WebGPU, has neither).
const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP.union(wgpu::Features::SHADER_F16);

/// What the device did since the last [`Gpu::reset_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuStats {
    pub dispatches: u64,
    pub submits: u64,
    /// Bytes copied from the GPU to the host.
    pub bytes_read: u64,
}

/// How a kernel uses one storage binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// A compiled kernel: its pipeline and the layout of its bind group (binding 0: the parameters
/// as a uniform with a dynamic offset; bindings 1..: storage buffers).
pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    n_storage: usize,
}

/// The key of the pipeline cache: kernel name and the weight format it was specialized for.
pub type KernelKey = (&'static str, u32);

/// An activation buffer borrowed from the pool; it returns there when the last tensor using it
/// is dropped. Reuse inside one pending encoder is safe: commands run in recording order.
pub struct PooledBuffer {
    pub buffer: wgpu::Buffer,
    class: u64,
    pool: Arc<Mutex<HashMap<u64, Vec<wgpu::Buffer>>>>,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.entry(self.class).or_default();
        if list.len() < POOL_PER_CLASS {
            list.push(self.buffer.clone());
        }
    }
}

/// The most bytes [`Gpu::upload`] hands to one `Queue::write_buffer` (a multiple of 4).
pub const UPLOAD_PIECE: usize = 16 << 20;

/// One storage binding of a dispatch: a buffer and how many bytes of it the kernel may see.
#[derive(Clone, Copy)]
pub struct Bind<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub bytes: u64,
}

/// The work recorded since the last submit. `pass` is declared first so that it ends (drops)
/// before its encoder does.
struct Pending {
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: wgpu::CommandEncoder,
}

/// The key of a cached bind group: the kernel (by address: kernels live as long as the cache)
/// and each storage binding's buffer and size.
type BindKey = (usize, Vec<(wgpu::Buffer, u64)>);

/// Bind groups by kernel and buffers: activation buffers come from the pool, so a decode step
/// binds the same buffers as the one before it and creating bind groups, the largest host cost
/// of recording a step, is skipped. A cached group holds its buffers, so an owner of buffers
/// that may be bound (a KV cache) keeps a handle and calls [`BindGroups::forget`] as it drops
/// them: otherwise the cache would keep them allocated.
#[derive(Clone, Default)]
pub struct BindGroups(Arc<Mutex<HashMap<BindKey, wgpu::BindGroup>>>);

impl BindGroups {
    /// Drops every cached bind group that binds one of `buffers`.
    // A buffer hashes and compares by its id, which its interior mutability (mapping state)
    // leaves alone: the cache's own keys are buffers too.
    #[allow(clippy::mutable_key_type)]
    pub fn forget<'a>(&self, buffers: impl IntoIterator<Item = &'a wgpu::Buffer>) {
        let gone: std::collections::HashSet<&wgpu::Buffer> = buffers.into_iter().collect();
        if gone.is_empty() {
            return;
        }
        lock(&self.0).retain(|key, _| !key.1.iter().any(|(b, _)| gone.contains(b)));
    }

    fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// Cached bind groups that bind one of `buffers`.
    #[allow(clippy::mutable_key_type)] // as in `forget`
    fn over<'a>(&self, buffers: impl IntoIterator<Item = &'a wgpu::Buffer>) -> usize {
        let of: std::collections::HashSet<&wgpu::Buffer> = buffers.into_iter().collect();
        lock(&self.0).keys().filter(|key| key.1.iter().any(|(b, _)| of.contains(b))).count()
    }
}

struct State {
    kernels: HashMap<KernelKey, Arc<Kernel>>,
    pending: Option<Pending>,
    /// Parameters of the pending dispatches, uploaded to `params` just before the submit.
    param_bytes: Vec<u8>,
    stats: GpuStats,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// What the kernels may use beyond plain WGSL, and the bench's overrides.
    tuning: Mutex<Tuning>,
    /// Set by the device-lost callback; every op checks it first.
    lost: Arc<Mutex<Option<String>>>,
    /// The first error the device reported outside an error scope (validation, out of memory).
    error: Arc<Mutex<Option<(GpuFailure, String)>>>,
    params: wgpu::Buffer,
    param_stride: u64,
    pool: Arc<Mutex<HashMap<u64, Vec<wgpu::Buffer>>>>,
    bind_groups: BindGroups,
    state: Mutex<State>,
}

/// Kernel variants. Chosen from the adapter at device creation; the bench overrides them to
/// compare (`gpu_bench`), the kernel tests to cover each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// min(32, the adapter's smallest subgroup size) when the device has subgroups and the
    /// kernels may use them (matvec's lane sums).
    pub subgroup: Option<u32>,
    /// Weight rows per 32 lanes in matvec; `None`: by the matrix's size (`ops::matvec_rows`).
    pub matvec_rows: Option<u32>,
    /// Whether a plain matvec of a 32-value format takes x in 8 bits (`matvec_q8.wgsl`);
    /// `None`: where it takes 4 rows per lane group (`ops::matvec_q8`).
    pub matvec_q8: Option<bool>,
    /// Whether matvec_q8 takes one block per lane in 16-byte loads (its WIDE variant) rather
    /// than a quarter block per lane in words; `None`: quarters, the variant measured so far.
    pub matvec_wide: Option<bool>,
    /// Whether attention binds the f16 KV cache as `vec2<f16>` rather than unpacking u32 words
    /// (products are f32 either way: `Gpu::attn_f16`); `None`: where the device has shader-f16.
    pub f16: Option<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves a future natively, where wgpu's futures are ready once the device is polled.
#[cfg(not(target_arch = "wasm32"))]
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// The first high-performance adapter wgpu finds (Vulkan natively).
#[cfg(not(target_arch = "wasm32"))]
pub fn request_adapter() -> Result<wgpu::Adapter> {
    block_on(request_adapter_async())
}

/// The first high-performance adapter: Vulkan natively, the browser's WebGPU in wasm.
pub async fn request_adapter_async() -> Result<wgpu::Adapter> {
    #[cfg(target_arch = "wasm32")]
    let instance = {
        // wgpu panics where there is no `navigator.gpu`: ask first.
        if !wgpu::util::is_browser_webgpu_supported().await {
            return Err(Error::gpu(GpuFailure::Unavailable, "no WebGPU in this browser (navigator.gpu is missing)"));
        }
        wgpu::Instance::new(wgpu::InstanceDescriptor { backends: wgpu::Backends::BROWSER_WEBGPU, ..wgpu::InstanceDescriptor::new_without_display_handle() })
    };
    #[cfg(not(target_arch = "wasm32"))]
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await
        .map_err(|e| Error::gpu(GpuFailure::Unavailable, format!("no GPU adapter: {e} (natively nib needs Vulkan; on Linux without a GPU install mesa-vulkan-drivers for lavapipe)")))
}

/// A readback under way: see [`Gpu::begin_read`].
pub struct PendingRead {
    staging: wgpu::Buffer,
    slot: Arc<Mutex<Slot<std::result::Result<(), wgpu::BufferAsyncError>>>>,
    bytes: u64,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    submission: Option<wgpu::SubmissionIndex>,
}

/// A value a callback delivers and a future awaits: how a readback completes in the browser,
/// where `map_async` resolves from the event loop.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct SlotFuture<T>(Arc<Mutex<Slot<T>>>);

impl<T> std::future::Future for SlotFuture<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = lock(&self.0);
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn fill_slot<T>(slot: &Arc<Mutex<Slot<T>>>, value: T) {
    let waker = {
        let mut s = lock(slot);
        s.value = Some(value);
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

impl Gpu {
    /// Opens [`request_adapter`]'s adapter and a device with the largest storage buffers it
    /// allows, since a weight is bound whole when it fits.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        block_on(Self::new_async())
    }

    /// [`Gpu::new`] for every target (the browser can only await the adapter and device).
    pub async fn new_async() -> Result<Self> {
        let adapter = request_adapter_async().await?;
        let info = adapter.get_info();
        let have = adapter.limits();
        let want = wgpu::Limits {
            max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
            max_buffer_size: have.max_buffer_size,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroup_storage_size: have.max_compute_workgroup_storage_size.min(32 << 10),
            ..wgpu::Limits::default()
        };
        let mut missing = Vec::new();
        want.check_limits_with_fail_fn(&have, false, |name, wanted, allowed| missing.push(format!("{name}: need {wanted}, adapter has {allowed}")));
        if !missing.is_empty() {
            return Err(Error::gpu(GpuFailure::Unavailable, format!("adapter {:?} lacks limits nib needs: {}", info.name, missing.join("; "))));
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("nib"),
                required_features: adapter.features() & OPTIONAL_FEATURES,
                required_limits: want.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::gpu(GpuFailure::Unavailable, format!("no device on {:?}: {e}", info.name)))?;

        let lost = Arc::new(Mutex::new(None));
        let lost_cb = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, msg| {
            *lock(&lost_cb) = Some(if msg.is_empty() { format!("{reason:?}") } else { format!("{reason:?}: {msg}") });
        });
        let error = Arc::new(Mutex::new(None));
        let error_cb = Arc::clone(&error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let kind = if matches!(e, wgpu::Error::OutOfMemory { .. }) { GpuFailure::OutOfMemory } else { GpuFailure::Failed };
            lock(&error_cb).get_or_insert_with(|| (kind, e.to_string()));
        }));

        let param_stride = PARAM_BYTES.max(want.min_uniform_buffer_offset_alignment as u64);
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("nib params"),
            size: param_stride * PARAM_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let features = adapter.features() & OPTIONAL_FEATURES;
        // Subgroup shuffles serve lane sums within 32-lane groups: sizes that are powers of two.
        let sg = info.subgroup_min_size.min(32);
        let subgroup = (features.contains(wgpu::Features::SUBGROUP) && sg >= 4 && sg.is_power_of_two()).then_some(sg);
        Ok(Gpu {
            device,
            queue,
            info,
            limits: want,
            features,
            tuning: Mutex::new(Tuning { subgroup, matvec_rows: None, matvec_q8: None, matvec_wide: None, f16: None }),
            lost,
            error,
            params,
            param_stride,
            pool: Arc::new(Mutex::new(HashMap::new())),
            bind_groups: BindGroups::default(),
            state: Mutex::new(State { kernels: HashMap::new(), pending: None, param_bytes: Vec::new(), stats: GpuStats::default() }),
        })
    }

    /// Runs `f` inside an error scope of `filter` and returns what the scope caught. In the
    /// browser a scope can only be awaited, so there `f` runs unscoped and an error reaches the
    /// uncaptured-error handler instead, to be reported by [`Gpu::check`] or [`Gpu::settle`].
    fn scoped<T>(&self, filter: wgpu::ErrorFilter, f: impl FnOnce() -> T) -> (T, Option<wgpu::Error>) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let scope = self.device.push_error_scope(filter);
            let value = f();
            (value, block_on(scope.pop()))
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = filter;
            (f(), None)
        }
    }

    /// A one-line account of the adapter and the limits the device got.
    pub fn describe(&self) -> String {
        let subgroups = match lock(&self.tuning).subgroup {
            Some(n) => format!("subgroups (lane sums in subgroups of {n})"),
            None if self.features.contains(wgpu::Features::SUBGROUP) => "subgroups unused".into(),
            None => "no subgroups (lane sums in workgroup memory)".into(),
        };
        let f16 = match (self.attn_f16(), self.has_f16()) {
            (true, _) => "shader-f16 (attention reads the KV cache as f16)",
            (false, true) => "shader-f16 unused",
            (false, false) => "no shader-f16 (attention unpacks the KV cache to f32)",
        };
        format!(
            "{} ({:?}, {:?}, driver {:?}); max storage binding {} MiB, max buffer {} MiB, workgroup memory {} KiB; {subgroups}; {f16}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver_info,
            self.limits.max_storage_buffer_binding_size >> 20,
            self.limits.max_buffer_size >> 20,
            self.limits.max_compute_workgroup_storage_size >> 10,
        )
    }

    pub fn tuning(&self) -> Tuning {
        *lock(&self.tuning)
    }

    /// Whether the device has shader-f16 (the adapter offered it).
    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Whether attention reads the KV cache as f16 (`Tuning::f16`; by default where the device
    /// has shader-f16).
    pub fn attn_f16(&self) -> bool {
        self.tuning().f16.unwrap_or(self.has_f16())
    }

    /// Overrides the kernel variants (the bench and the kernel tests): subgroups and f16 only
    /// where the device has them.
    pub fn set_tuning(&self, t: Tuning) -> Result<()> {
        if t.f16 == Some(true) && !self.has_f16() {
            return Err(Error::Unsupported(format!("f16 attention on {:?}, which lacks shader-f16", self.info.name)));
        }
        if let Some(n) = t.subgroup {
            if !self.features.contains(wgpu::Features::SUBGROUP) || !n.is_power_of_two() || n > self.info.subgroup_min_size.min(32) {
                return Err(Error::Unsupported(format!("lane sums in subgroups of {n} on {:?}", self.info.name)));
            }
        }
        *lock(&self.tuning) = t;
        Ok(())
    }

    /// Fails once the device is lost or has reported an error; the backend is unusable then.
    pub fn check(&self) -> Result<()> {
        if let Some(why) = lock(&self.lost).as_ref() {
            return Err(Error::gpu(GpuFailure::DeviceLost, why.clone()));
        }
        if let Some((kind, e)) = lock(&self.error).as_ref() {
            return Err(Error::gpu(*kind, e.clone()));
        }
        Ok(())
    }

    /// Destroys the device, as a driver reset or an unplugged GPU would: every later call
    /// fails with `DeviceLost`. Tests use it to check what follows a lost device.
    pub fn destroy(&self) {
        self.device.destroy();
        // Natively wgpu runs the device-lost callback from its next poll with an empty queue.
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Whether the adapter is a CPU implementation (lavapipe, SwiftShader).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Largest byte size a single storage binding may have.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    pub fn stats(&self) -> GpuStats {
        lock(&self.state).stats
    }

    /// Drops every cached bind group, and with them the buffers only they still hold (pooled
    /// buffers past the pool's room, a rope table that was replaced).
    pub fn forget_bind_groups(&self) {
        lock(&self.bind_groups.0).clear();
    }

    /// The bind-group cache, for owners of buffers to forget theirs with
    /// ([`BindGroups::forget`]).
    pub fn bind_groups(&self) -> BindGroups {
        self.bind_groups.clone()
    }

    /// Bind groups cached now (tests check that dropped KV caches take theirs along).
    pub fn cached_bind_groups(&self) -> usize {
        self.bind_groups.len()
    }

    /// Cached bind groups that bind one of `buffers` (`GpuCache::buffers`, say).
    pub fn cached_bind_groups_over<'a>(&self, buffers: impl IntoIterator<Item = &'a wgpu::Buffer>) -> usize {
        self.bind_groups.over(buffers)
    }

    pub fn reset_stats(&self) {
        lock(&self.state).stats = GpuStats::default();
    }

    /// An activation buffer of at least `bytes` (from the pool when one is free). Sizes are
    /// rounded up to a power of two so that varying prompt lengths reuse the same buffers, or
    /// to the largest binding where the power of two would exceed it. More than one binding
    /// holds is an out-of-memory error: the model loaded, and the request (a long prompt, a
    /// long context) asked the device for more than it can bind.
    pub fn alloc(&self, bytes: u64) -> Result<PooledBuffer> {
        let max = self.max_binding() & !3;
        if bytes > max {
            return Err(Error::gpu(
                GpuFailure::OutOfMemory,
                format!("an activation of {bytes} bytes exceeds the GPU's largest storage binding ({max} bytes)"),
            ));
        }
        let class = bytes.max(256).checked_next_power_of_two().unwrap_or(u64::MAX).min(max);
        let reused = lock(&self.pool).get_mut(&class).and_then(|l| l.pop());
        let buffer = match reused {
            Some(b) => b,
            None => self.create_checked(&wgpu::BufferDescriptor {
                label: Some("nib activation"),
                size: class,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })?,
        };
        Ok(PooledBuffer { buffer, class, pool: Arc::clone(&self.pool) })
    }

    /// Creates a buffer inside an out-of-memory error scope, so that a failed allocation is an
    /// error here and not a lost device later.
    pub fn create_checked(&self, desc: &wgpu::BufferDescriptor) -> Result<wgpu::Buffer> {
        match self.scoped(wgpu::ErrorFilter::OutOfMemory, || self.device.create_buffer(desc)) {
            (buffer, None) => Ok(buffer),
            (_, Some(e)) => Err(Error::gpu(GpuFailure::OutOfMemory, format!("allocating {} ({} bytes): {e}", desc.label.unwrap_or("a buffer"), desc.size))),
        }
    }

    /// A storage buffer holding `bytes` (padded to a multiple of 4, plus `pad` zero bytes).
    pub fn upload(&self, label: &str, bytes: &[u8], pad: usize) -> Result<wgpu::Buffer> {
        self.upload_with(label, bytes.len(), pad, |data| data.extend_from_slice(bytes))
    }

    /// [`Gpu::upload`] of the `len` bytes that `fill` appends to the staging buffer. The bytes
    /// go by `Queue::write_buffer` in pieces of at most [`UPLOAD_PIECE`] (queue-ordered: before
    /// the next submit's work, which is the first that can read the new buffer), not by a
    /// buffer mapped at creation: in a browser that needs one shared-memory mapping of the
    /// whole buffer, which Chromium refuses when memory is short with an exception that wgpu
    /// turns into a panic (it did for the 0.5B shape's 78 MB embedding on a nearly full disk).
    pub fn upload_with(&self, label: &str, len: usize, pad: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Result<wgpu::Buffer> {
        let len = (len.div_ceil(4) * 4 + pad.div_ceil(4) * 4).max(4);
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| Error::gpu(GpuFailure::OutOfMemory, format!("no host memory to stage {len} bytes")))?;
        fill(&mut data);
        data.resize(len, 0);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buffer = self.create_checked(&wgpu::BufferDescriptor { label: Some(label), size: len as u64, usage, mapped_at_creation: false })?;
        for (i, piece) in data.chunks(UPLOAD_PIECE).enumerate() {
            self.queue.write_buffer(&buffer, (i * UPLOAD_PIECE) as u64, piece);
        }
        Ok(buffer)
    }

    /// Whether the kernel `key` has been compiled (the tests' proof that a variant ran).
    pub fn has_kernel(&self, key: KernelKey) -> bool {
        lock(&self.state).kernels.contains_key(&key)
    }

    /// The kernel `key`, compiled from `source` on first use.
    pub fn kernel(&self, key: KernelKey, access: &[Access], source: impl FnOnce() -> String) -> Result<Arc<Kernel>> {
        if let Some(k) = lock(&self.state).kernels.get(&key) {
            return Ok(Arc::clone(k));
        }
        let label = format!("{}/{}", key.0, key.1);
        let (k, err) = self.scoped(wgpu::ErrorFilter::Validation, || self.compile(&label, access, source()));
        if let Some(e) = err {
            return Err(Error::gpu(GpuFailure::Failed, format!("kernel {label} did not compile: {e}")));
        }
        let k = Arc::new(k);
        lock(&self.state).kernels.insert(key, Arc::clone(&k));
        Ok(k)
    }

    /// The pipeline and bind-group layout of one kernel.
    fn compile(&self, label: &str, access: &[Access], source: String) -> Kernel {
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.into()) });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(PARAM_BYTES),
            },
            count: None,
        }];
        for (i, a) in access.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *a == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Kernel { pipeline, layout, n_storage: access.len() }
    }

    /// Records one dispatch of `kernel` into the pending encoder. `params` are up to 16 words.
    pub fn dispatch(&self, kernel: &Kernel, params: &[u32], binds: &[Bind], groups: [u32; 3]) -> Result<()> {
        self.check()?;
        if binds.len() != kernel.n_storage || params.len() * 4 > PARAM_BYTES as usize {
            return Err(Error::InvalidArgument(format!("dispatch: {} bindings for {}, {} parameter words", binds.len(), kernel.n_storage, params.len())));
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            // The model runs here; this call's rows or context are more than one dispatch takes.
            return Err(Error::InvalidArgument(format!("dispatch of {groups:?} workgroups exceeds the GPU's {max} per dimension (too many rows or positions for one call)")));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let mut st = lock(&self.state);
        if st.param_bytes.len() as u64 >= self.param_stride * PARAM_SLOTS {
            self.flush_locked(&mut st)?;
        }
        let offset = st.param_bytes.len() as u64;
        for w in params {
            st.param_bytes.extend_from_slice(&w.to_le_bytes());
        }
        st.param_bytes.resize((offset + self.param_stride) as usize, 0);

        let mut key: BindKey = (kernel as *const Kernel as usize, Vec::with_capacity(binds.len()));
        for (i, b) in binds.iter().enumerate() {
            let size = b.bytes.div_ceil(4).max(1) * 4;
            if size > b.buffer.size() {
                return Err(Error::InvalidArgument(format!("dispatch: binding {} of {size} bytes in a buffer of {}", i + 1, b.buffer.size())));
            }
            key.1.push((b.buffer.clone(), size));
        }
        let cached = lock(&self.bind_groups.0).get(&key).cloned();
        let bind_group = match cached {
            Some(g) => g,
            None => {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.params, offset: 0, size: wgpu::BufferSize::new(PARAM_BYTES) }),
                }];
                for (i, (buffer, size)) in key.1.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset: 0, size: wgpu::BufferSize::new(*size) }),
                    });
                }
                let g = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &kernel.layout, entries: &entries });
                let mut groups = lock(&self.bind_groups.0);
                if groups.len() >= BIND_GROUPS_KEPT {
                    groups.clear();
                }
                groups.insert(key, g.clone());
                g
            }
        };
        let pass = self.pass_locked(&mut st);
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[offset as u32]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        st.stats.dispatches += 1;
        Ok(())
    }

    fn pending_locked<'s>(&self, st: &'s mut State) -> &'s mut Pending {
        st.pending.get_or_insert_with(|| Pending {
            encoder: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("nib step") }),
            pass: None,
        })
    }

    /// The open compute pass of the pending encoder: consecutive dispatches share one pass.
    fn pass_locked<'s>(&self, st: &'s mut State) -> &'s mut wgpu::ComputePass<'static> {
        let p = self.pending_locked(st);
        p.pass.get_or_insert_with(|| {
            p.encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None }).forget_lifetime()
        })
    }

    /// Records a buffer-to-buffer copy (ending the open compute pass).
    pub fn copy(&self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, bytes: u64) -> Result<()> {
        self.check()?;
        let mut st = lock(&self.state);
        let p = self.pending_locked(&mut st);
        p.pass = None;
        p.encoder.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
        Ok(())
    }

    /// Submits the pending work, if any.
    pub fn flush(&self) -> Result<()> {
        let mut st = lock(&self.state);
        self.flush_locked(&mut st).map(drop)
    }

    fn flush_locked(&self, st: &mut State) -> Result<Option<wgpu::SubmissionIndex>> {
        let Some(mut p) = st.pending.take() else { return Ok(None) };
        p.pass = None;
        if !st.param_bytes.is_empty() {
            // Queue-ordered: the work submitted before reads its own parameters.
            self.queue.write_buffer(&self.params, 0, &st.param_bytes);
            st.param_bytes.clear();
        }
        let index = self.queue.submit([p.encoder.finish()]);
        st.stats.submits += 1;
        self.check()?;
        Ok(Some(index))
    }

    /// Waits until the GPU has finished everything submitted.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::gpu(GpuFailure::Failed, format!("wait failed: {e}")))?;
        self.check()
    }

    /// Ends the pending encoder with a copy of `bytes` bytes at `offset` of `src` into a
    /// mappable buffer, submits it, and starts mapping: the bytes are collected later with
    /// [`Gpu::end_read`] (or awaited in [`Gpu::read_async`]), so the host may record more work
    /// while the GPU runs this.
    pub fn begin_read(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<PendingRead> {
        let size = bytes.div_ceil(4).max(1) * 4;
        let staging = self.create_checked(&wgpu::BufferDescriptor {
            label: Some("nib readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })?;
        self.copy(src, offset, &staging, 0, size)?;
        let submission = {
            let mut st = lock(&self.state);
            st.stats.bytes_read += bytes;
            self.flush_locked(&mut st)?
        };
        let slot = Arc::new(Mutex::new(Slot { value: None, waker: None }));
        let filled = Arc::clone(&slot);
        staging.map_async(wgpu::MapMode::Read, .., move |r| fill_slot(&filled, r));
        Ok(PendingRead { staging, slot, bytes, submission })
    }

    /// The first `bytes` bytes of a mapped staging buffer.
    fn finish_read(&self, staging: wgpu::Buffer, mapped: std::result::Result<(), wgpu::BufferAsyncError>, bytes: u64) -> Result<Vec<u8>> {
        self.check()?;
        // With nib's usage a mapping fails only when the device went away; the browser may say
        // so before the device-lost callback has run.
        mapped.map_err(|e| Error::gpu(GpuFailure::DeviceLost, format!("readback failed: {e}")))?;
        let view = staging.get_mapped_range(..).map_err(|e| Error::gpu(GpuFailure::Failed, format!("readback: {e}")))?;
        let out = view.get(..bytes as usize).map(|s| s.to_vec()).ok_or_else(|| Error::gpu(GpuFailure::Failed, "readback: short mapping"))?;
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// The bytes of a [`Gpu::begin_read`], waiting for the submission that holds them (and no
    /// later one).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn end_read(&self, r: PendingRead) -> Result<Vec<u8>> {
        // Another thread's poll may be the one that runs the callback: poll until it has run.
        let mut polls = 0;
        let mapped = loop {
            self.device
                .poll(wgpu::PollType::Wait { submission_index: r.submission.clone(), timeout: None })
                .map_err(|e| Error::gpu(GpuFailure::Failed, format!("wait failed: {e}")))?;
            self.check()?;
            if let Some(m) = lock(&r.slot).value.take() {
                break m;
            }
            polls += 1;
            if polls > 10_000 {
                return Err(Error::gpu(GpuFailure::Failed, "readback did not complete"));
            }
            std::thread::yield_now();
        };
        self.finish_read(r.staging, mapped, r.bytes)
    }

    /// Copies `bytes` bytes at `offset` of `src` to the host: ends the pending encoder with the
    /// copy, submits it, and waits.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let r = self.begin_read(src, offset, bytes)?;
        self.end_read(r)
    }

    /// [`Gpu::read`] for every target: in the browser the mapping resolves from the event loop
    /// while this future waits.
    pub async fn read_async(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let r = self.begin_read(src, offset, bytes)?;
        self.end_read_async(r).await
    }

    /// [`Gpu::end_read`] for every target.
    pub async fn end_read_async(&self, r: PendingRead) -> Result<Vec<u8>> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.end_read(r)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let mapped = SlotFuture(Arc::clone(&r.slot)).await;
            self.finish_read(r.staging, mapped, r.bytes)
        }
    }

    /// Waits for everything submitted so far and reports any error the device raised meanwhile
    /// (in the browser, where errors arrive asynchronously, after loading a model).
    pub async fn settle(&self) -> Result<()> {
        let probe = self.alloc(4)?;
        self.read_async(&probe.buffer, 0, 4).await?;
        self.check()
    }
}
