// C# binding of libservicepoint (see include/servicepoint.h and ../README.md).

using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Servicepoint
{
    // --- native declarations ------------------------------------------------------------------

    /// <summary>
    /// P/Invoke declarations of every function of include/servicepoint.h. Handles are IntPtr;
    /// fallible functions return the int32 sp_result; strings go in as NUL-terminated UTF-8
    /// byte[] (see <see cref="Utf8Z"/>) and come out as borrowed pointers copied with
    /// <see cref="PtrToString"/>. The static constructor checks the library's ABI version.
    /// </summary>
    internal static class Native
    {
        internal const string Lib = "servicepoint";

        /// <summary>SP_ABI_VERSION of the header this binding was written for.</summary>
        internal const uint AbiVersion = 2;

        /// <summary>SP_INFINITE.</summary>
        internal const int Infinite = -1;

        static Native()
        {
            uint abi;
            try
            {
                abi = sp_abi_version();
            }
            catch (DllNotFoundException e)
            {
                throw new DllNotFoundException(
                    "servicepoint: cannot load the native library 'servicepoint' " +
                    "(libservicepoint.so, servicepoint.dll or libservicepoint.dylib). Build it with " +
                    "`cargo build` and put its directory on LD_LIBRARY_PATH (PATH on Windows, " +
                    "DYLD_LIBRARY_PATH on macOS). " + e.Message, e);
            }
            catch (EntryPointNotFoundException e)
            {
                throw new TypeLoadException(
                    "servicepoint: the loaded 'servicepoint' library has no sp_abi_version(); it is " +
                    "not libservicepoint or is too old for this binding", e);
            }
            if (abi != AbiVersion)
            {
                throw new TypeLoadException(string.Format(
                    "servicepoint: the loaded library has ABI version {0}, but this binding was " +
                    "written for ABI version {1}; update either the binding or the library",
                    abi, AbiVersion));
            }
        }

        /// <summary>typedef int32_t (*sp_body_read_cb)(void *userdata, uint8_t *buf, size_t cap, size_t *out_n);
        /// outN is a size_t* (write it with Marshal.WriteIntPtr).</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int BodyReadCallback(IntPtr userdata, IntPtr buf, UIntPtr cap, IntPtr outN);

        /// <summary>typedef int32_t (*sp_cert_validator_cb)(void *userdata, const char *host,
        /// const uint8_t *const *certs, const size_t *cert_lens, size_t count, int32_t builtin_result);
        /// certs and certLens are arrays of count pointers / size_t.</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int CertValidatorCallback(IntPtr userdata, IntPtr host, IntPtr certs, IntPtr certLens, UIntPtr count, int builtinResult);

        /// <summary>SP_TLS_1_2.</summary>
        internal const int SP_TLS_1_2 = 12;

        /// <summary>SP_TLS_1_3.</summary>
        internal const int SP_TLS_1_3 = 13;

        /// <summary>typedef void (*sp_log_cb)(void *userdata, int32_t level, const char *message).</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogCallback(IntPtr userdata, int level, IntPtr message);

        internal const int SP_LOG_OFF = 0, SP_LOG_ERROR = 1, SP_LOG_WARN = 2, SP_LOG_INFO = 3, SP_LOG_DEBUG = 4;
        internal const int SP_METRIC_QUEUE_WAIT = 0, SP_METRIC_CONNECTION_LIFETIME = 1;
        internal const int SP_HISTOGRAM_BUCKETS = 20;

        /// <summary>struct sp_histogram: uint32 struct_size, uint32 bucket_count, uint64 count,
        /// uint64 sum_us, uint64 buckets[SP_HISTOGRAM_BUCKETS] (184 bytes, no padding).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct sp_histogram
        {
            public uint struct_size;
            public uint bucket_count;
            public ulong count;
            public ulong sum_us;
            public fixed ulong buckets[SP_HISTOGRAM_BUCKETS];
        }

        /// <summary>struct sp_statistics: uint32 struct_size, uint32 reserved (0), then 23
        /// uint64; 192 bytes, no padding.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct sp_statistics
        {
            public uint struct_size;
            public uint reserved;
            public ulong open;
            public ulong idle;
            public ulong busy;
            public ulong waiting;
            public ulong connections_opened;
            public ulong requests;
            public ulong reuses;
            public ulong retries;
            public ulong closed_lease;
            public ulong closed_idle;
            public ulong closed_keep_alive_off;
            public ulong closed_server;
            public ulong closed_stale;
            public ulong closed_error;
            public ulong closed_max_requests;
            public ulong closed_group;
            public ulong closed_abandoned;
            public ulong tls_full_handshakes;
            public ulong tls_resumed_handshakes;
            public ulong closed_in_flight;
            public ulong closed_address_gone;
            public ulong pipelined;
            public ulong pipeline_replays;
        }

        // Manager.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_new(out IntPtr outManager);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_manager_free(IntPtr manager);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_find(IntPtr manager, byte[] uri, out IntPtr outPoint);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_default_connection_limit(IntPtr manager, int limit);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_default_connection_limit(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_max_service_points(IntPtr manager, int max);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_max_service_points(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_max_service_point_idle_time(IntPtr manager, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_max_service_point_idle_time(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_keep_alive_default(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_keep_alive_default(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_service_point_count(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_dns_refresh_timeout(IntPtr manager, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_dns_refresh_timeout(IntPtr manager, out int outValue);

        // Proxies.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_proxy(IntPtr manager, byte[] url);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_proxy(IntPtr manager, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_proxy_bypass(IntPtr manager, byte[] list);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_proxy_bypass(IntPtr manager, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_use_environment_proxy(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_use_environment_proxy(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_find_with_proxy(IntPtr manager, byte[] uri, byte[] proxy, out IntPtr outPoint);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_proxy(IntPtr request, byte[] url);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_proxy(IntPtr request, byte[] buf, UIntPtr cap, out UIntPtr outLen);

        // Service point.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_point_free(IntPtr point);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_address(IntPtr point, out IntPtr outAddress);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_lease_timeout(IntPtr point, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_lease_timeout(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_connection_limit(IntPtr point, int limit);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_connection_limit(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_max_idle_time(IntPtr point, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_max_idle_time(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_max_requests_per_connection(IntPtr point, int max);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_max_requests_per_connection(IntPtr point, out int outValue);
        // Socket settings of new connections (ReceiveBufferSize, UseNagleAlgorithm, SetTcpKeepAlive,
        // the local address, the connect timeout) and a response's descriptor.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_receive_buffer_size(IntPtr point, int bytes);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_receive_buffer_size(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_send_buffer_size(IntPtr point, int bytes);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_send_buffer_size(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_use_nagle_algorithm(IntPtr point, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_use_nagle_algorithm(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_tcp_keep_alive(IntPtr point, int enabled, int timeMs, int intervalMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_tcp_keep_alive(IntPtr point, out int outEnabled, out int outTimeMs, out int outIntervalMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_local_address(IntPtr point, byte[] address);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_local_address(IntPtr point, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_connect_timeout(IntPtr point, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_connect_timeout(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_use_nagle_algorithm(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_use_nagle_algorithm(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_expect_100_continue(IntPtr point, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_expect_100_continue(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_expect_100_continue_timeout(IntPtr point, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_expect_100_continue_timeout(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_pipelining(IntPtr point, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_pipelining(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_pipeline_depth(IntPtr point, int depth);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_pipeline_depth(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_expect_100_continue(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_expect_100_continue(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_tcp_keep_alive(IntPtr manager, int enabled, int timeMs, int intervalMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_tcp_keep_alive(IntPtr manager, out int outEnabled, out int outTimeMs, out int outIntervalMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_socket(IntPtr response, out int outFd);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_current_connections(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_idle_since(IntPtr point, out long outUnixMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_statistics(IntPtr point, ref sp_statistics outStats);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_close_connection_group(IntPtr point, byte[] name, out int outExisted);
        // The read-only facts of a service point and of a response's TLS connection.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_protocol_version(IntPtr point, out int outVersion);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_connection_name(IntPtr point, out IntPtr outName);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_supports_pipelining(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_certificate(IntPtr point, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_tls_version(IntPtr response, out int outVersion);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_tls_cipher_suite(IntPtr response, out IntPtr outName);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_tls_resumed(IntPtr response, out int outResumed);

        // Request description.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_new(byte[] method, byte[] url, out IntPtr outRequest);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_http_request_free(IntPtr request);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_add_header(IntPtr request, byte[] name, byte[] value);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_body(IntPtr request, byte[] data, UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_body_reader(IntPtr request, BodyReadCallback read, IntPtr userdata);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_keep_alive(IntPtr request, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_timeout(IntPtr request, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_read_timeout(IntPtr request, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_connection_group(IntPtr request, byte[] name);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_retryable(IntPtr request, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_keep_alive(IntPtr request, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_timeout(IntPtr request, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_read_timeout(IntPtr request, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_retryable(IntPtr request, out int outValue);
        // 1 may be pipelined, 0 never, -1 as the service point says (the default).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_pipelined(IntPtr request, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_pipelined(IntPtr request, out int outValue);
        // The copy-out text getters, snprintf-style: (request, char *buf, size_t cap, size_t *out_len).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_connection_group(IntPtr request, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_method(IntPtr request, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_url(IntPtr request, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_request(IntPtr manager, IntPtr request, out IntPtr outResponse);

        /// <summary>typedef void (*sp_response_callback)(void *userdata, sp_result result, struct sp_response *response).
        /// The binding uses it only with the _queued functions: it runs on the binding's pump
        /// thread (CompletionPump), never on a library thread.</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ResponseCallback(IntPtr userdata, int result, IntPtr response);

        /// <summary>typedef void (*sp_read_callback)(void *userdata, sp_result result, const uint8_t *data, size_t len);
        /// data is valid only during the call; len 0 is the end of the body.</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ReadCallback(IntPtr userdata, int result, IntPtr data, UIntPtr len);

        // Asynchronous requests and body reads, operations, completion queues, cancel tokens.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_request_async(IntPtr manager, IntPtr request, ResponseCallback callback, IntPtr userdata, out IntPtr outOperation);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_request_async_queued(IntPtr manager, IntPtr request, IntPtr queue, ResponseCallback callback, IntPtr userdata, out IntPtr outOperation);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_read_async(IntPtr response, UIntPtr max, ReadCallback callback, IntPtr userdata, out IntPtr outOperation);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_read_async_queued(IntPtr response, IntPtr queue, UIntPtr max, ReadCallback callback, IntPtr userdata, out IntPtr outOperation);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_operation_cancel(IntPtr operation);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_operation_is_done(IntPtr operation, out int outDone);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_operation_free(IntPtr operation);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_completion_queue_new(out IntPtr outQueue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_completion_queue_fd(IntPtr queue, out int outFd);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_completion_queue_run(IntPtr queue, UIntPtr max, out UIntPtr outRan);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_completion_queue_wait(IntPtr queue, int timeoutMs, out int outReady);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_completion_queue_len(IntPtr queue, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_completion_queue_free(IntPtr queue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_cancel_token_new(out IntPtr outToken);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_cancel_token_cancel(IntPtr token);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_cancel_token_reset(IntPtr token);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_cancel_token_is_canceled(IntPtr token, out int outCanceled);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_cancel_token_wakeup_fd(IntPtr token, out int outFd);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_cancel_token_free(IntPtr token);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_cancel_token(IntPtr request, IntPtr token);

        // Response.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_response_free(IntPtr response);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_status(IntPtr response, out int outStatus);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_http_version(IntPtr response, out int outVersion);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_reason(IntPtr response, out IntPtr outReason);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_header(IntPtr response, byte[] name, out IntPtr outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_head(IntPtr response, out IntPtr outText, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_header_count(IntPtr response, out UIntPtr outCount);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_header_at(IntPtr response, UIntPtr index, out IntPtr outName, out IntPtr outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_trailer(IntPtr response, byte[] name, out IntPtr outValue);
        /// <summary>sp_response_read into a pointer the caller pinned (Response.Read pins the
        /// caller's own array with `fixed` for the call: no copy, no marshalling).</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern unsafe int sp_response_read(IntPtr response, byte* buf, UIntPtr cap, out UIntPtr outN);
        /// <summary>sp_response_read_now into a pointer the caller pinned: the body bytes that
        /// have already arrived, never waiting (outN 0 when none have), outDone 1 once the end of
        /// the body has been reached. Allowed on any thread (Response.ReadAsync takes a body that
        /// came with its head here, without a round trip through the completion pump).</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern unsafe int sp_response_read_now(IntPtr response, byte* buf, UIntPtr cap, out UIntPtr outN, out int outDone);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_read_all(IntPtr response, out IntPtr outData, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_connection_id(IntPtr response, out ulong outId);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_local_port(IntPtr response, out int outPort);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_connection_reused(IntPtr response, out int outReused);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_retried(IntPtr response, out int outRetried);

        // Observing (logging, statistics, histograms).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_log_callback(IntPtr manager, int level, LogCallback callback, IntPtr userdata);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_log_level(IntPtr manager, out int outLevel);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_log_queue(IntPtr manager, IntPtr queue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_has_log_queue(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_enable_dns_round_robin(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_enable_dns_round_robin(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_resolve(IntPtr manager, byte[] host, int port, byte[] addresses);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_resolve(IntPtr manager, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern ulong sp_histogram_bound_us(UIntPtr index);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_histogram(IntPtr point, int which, ref sp_histogram outHistogram);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_histogram(IntPtr manager, int which, ref sp_histogram outHistogram);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_statistics(IntPtr manager, ref sp_statistics outStats);

        // TLS (manager).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_add_ca_pem(IntPtr manager, byte[] pem, UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_add_ca_file(IntPtr manager, byte[] path);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_system_roots(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_system_roots(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_ca_count(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_has_client_certificate(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_min_tls_version(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_has_certificate_validator(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_client_certificate(IntPtr manager, byte[] certPem, UIntPtr certLen, byte[] keyPem, UIntPtr keyLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_min_tls_version(IntPtr manager, int version);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_certificate_validator(IntPtr manager, CertValidatorCallback validator, IntPtr userdata);

        // Version and errors (infallible).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr sp_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern uint sp_abi_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr sp_strerror(int code);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr sp_last_error();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_last_error_request_sent();

        // --- helpers ------------------------------------------------------------------------

        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>string -> NUL-terminated UTF-8 for a const char * argument.</summary>
        internal static byte[] Utf8Z(string s, string what)
        {
            if (s == null) throw new ArgumentNullException(what);
            if (s.IndexOf('\0') >= 0)
            {
                throw new InvalidArgumentException(ErrorCode.InvalidArgument,
                    what + " contains a NUL character", false, null, null);
            }
            int n = Encoding.UTF8.GetByteCount(s);
            var bytes = new byte[n + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        static int StrLen(IntPtr p)
        {
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            return n;
        }

        static byte[] CopyZ(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            var bytes = new byte[StrLen(p)];
            if (bytes.Length > 0) Marshal.Copy(p, bytes, 0, bytes.Length);
            return bytes;
        }

        /// <summary>Copies a borrowed NUL-terminated UTF-8 string (null for NULL).</summary>
        internal static string PtrToString(IntPtr p)
        {
            byte[] bytes = CopyZ(p);
            return bytes == null ? null : Encoding.UTF8.GetString(bytes);
        }

        /// <summary>Copies a header or trailer field from the wire: UTF-8 if valid, else
        /// ISO-8859-1, so no byte is lost (as the Python binding does).</summary>
        internal static string PtrToField(IntPtr p)
        {
            byte[] bytes = CopyZ(p);
            return bytes == null ? "" : DecodeField(bytes, 0, bytes.Length);
        }

        /// <summary>Decodes a field: UTF-8 if valid, else ISO-8859-1.</summary>
        internal static string DecodeField(byte[] bytes, int offset, int count)
        {
            if (count <= 0) return "";
            bool ascii = true;
            for (int i = offset; i < offset + count; i++)
            {
                if (bytes[i] >= 0x80)
                {
                    ascii = false;
                    break;
                }
            }
            if (ascii) return Encoding.ASCII.GetString(bytes, offset, count);
            try
            {
                return StrictUtf8.GetString(bytes, offset, count);
            }
            catch (DecoderFallbackException)
            {
                var chars = new char[count];
                for (int i = 0; i < count; i++) chars[i] = (char)bytes[offset + i];
                return new string(chars);
            }
        }

        /// <summary>Builds the exception for a failed call. Must run right after the failing
        /// call, on the same thread, before any other call into the library: it reads the
        /// thread-local sp_last_error() and sp_last_error_request_sent().</summary>
        internal static ServicePointException Error(int code, string function, Exception inner)
        {
            string message = PtrToString(sp_last_error());
            bool sent = sp_last_error_request_sent() != 0;
            if (string.IsNullOrEmpty(message)) message = PtrToString(sp_strerror(code));
            if (string.IsNullOrEmpty(message)) message = "error " + code;
            return ServicePointException.Create((ErrorCode)code, message, sent, function, inner);
        }

        /// <summary>Throws the matching ServicePointException if rc is not SP_OK.</summary>
        internal static void Check(int rc, string function)
        {
            if (rc != 0) throw Error(rc, function, null);
        }

        /// <summary>Checks a non-negative int that goes to a size_t parameter.</summary>
        internal static UIntPtr Size(int n)
        {
            return new UIntPtr((uint)n);
        }
    }
}
