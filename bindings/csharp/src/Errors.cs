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
    /// <summary>The sp_result codes of include/servicepoint.h (ABI 1). Codes are only ever
    /// appended; an unknown code from a newer library is still a valid value of this enum.</summary>
    public enum ErrorCode
    {
        /// <summary>SP_OK: success.</summary>
        Ok = 0,
        /// <summary>SP_E_INVALID_ARGUMENT: an argument is not acceptable.</summary>
        InvalidArgument = 1,
        /// <summary>SP_E_NULL_POINTER: a required pointer argument is NULL.</summary>
        NullPointer = 2,
        /// <summary>SP_E_INVALID_UTF8: a string argument is not valid UTF-8.</summary>
        InvalidUtf8 = 3,
        /// <summary>SP_E_OUT_OF_RANGE: a numeric setting is out of range; nothing was changed.</summary>
        OutOfRange = 4,
        /// <summary>SP_E_INVALID_HANDLE: the handle is NULL, freed, of another kind, or never issued.</summary>
        InvalidHandle = 5,
        /// <summary>SP_E_INVALID_URL: the URL cannot be parsed or has no host.</summary>
        InvalidUrl = 6,
        /// <summary>SP_E_UNSUPPORTED_SCHEME: the scheme is neither http nor https.</summary>
        UnsupportedScheme = 7,
        /// <summary>SP_E_DNS: the host name could not be resolved.</summary>
        Dns = 8,
        /// <summary>SP_E_CONNECT: the TCP connection could not be established.</summary>
        Connect = 9,
        /// <summary>SP_E_CONNECT_TIMEOUT: connecting took longer than the request's timeout.</summary>
        ConnectTimeout = 10,
        /// <summary>SP_E_QUEUE_TIMEOUT: the request waited for a connection longer than its timeout.</summary>
        QueueTimeout = 11,
        /// <summary>SP_E_RESPONSE_TIMEOUT: the response head did not arrive within the timeout.</summary>
        ResponseTimeout = 12,
        /// <summary>SP_E_READ_TIMEOUT: a body read did not complete within the read timeout.</summary>
        ReadTimeout = 13,
        /// <summary>SP_E_TLS_CERTIFICATE: the server's TLS certificate was rejected.</summary>
        TlsCertificate = 14,
        /// <summary>SP_E_TLS_HANDSHAKE: the TLS handshake failed.</summary>
        TlsHandshake = 15,
        /// <summary>SP_E_PROTOCOL: the server sent invalid HTTP/1.x or exceeded the limits.</summary>
        Protocol = 16,
        /// <summary>SP_E_CONNECTION_CLOSED: the connection closed before the response was complete.</summary>
        ConnectionClosed = 17,
        /// <summary>SP_E_IO: another socket error.</summary>
        Io = 18,
        /// <summary>SP_E_TOO_MANY_SERVICE_POINTS: max service points reached, none evictable.</summary>
        TooManyServicePoints = 19,
        /// <summary>SP_E_CANCELED: the operation was canceled.</summary>
        Canceled = 20,
        /// <summary>SP_E_WRONG_THREAD: a blocking call was made from a library thread.</summary>
        WrongThread = 21,
        /// <summary>SP_E_PANIC: an internal error (a Rust panic) was caught.</summary>
        Panic = 22,
        /// <summary>SP_E_NOT_FOUND: the looked-up item does not exist.</summary>
        NotFound = 23,
        /// <summary>SP_E_MANAGER_CLOSED: the service point's manager was freed.</summary>
        ManagerClosed = 24,
        /// <summary>SP_E_BODY_SOURCE: the request body source reported an error.</summary>
        BodySource = 25,
        /// <summary>SP_E_TLS_UNKNOWN_ISSUER: the certificate's issuer is not trusted.</summary>
        TlsUnknownIssuer = 26,
        /// <summary>SP_E_TLS_CERT_EXPIRED: the certificate has expired or is not valid yet.</summary>
        TlsCertificateExpired = 27,
        /// <summary>SP_E_TLS_HOSTNAME_MISMATCH: the certificate is not valid for the host name.</summary>
        TlsHostnameMismatch = 28,
        /// <summary>SP_E_TLS_NOT_TLS: the server answered in plain HTTP (an http port used with https://).</summary>
        TlsNotTls = 29,
        /// <summary>SP_E_CONNECTION_RESET: the server reset the connection (RST) before the
        /// response was complete (ABI 2; SP_E_CONNECTION_CLOSED before).</summary>
        ConnectionReset = 30,
        /// <summary>SP_E_PROXY_AUTH_REQUIRED: the proxy answered CONNECT (an https request)
        /// with 407: no credentials, or wrong ones.</summary>
        ProxyAuthenticationRequired = 31,
        /// <summary>SP_E_PROXY_CONNECT: the proxy refused to open the tunnel (its answer to
        /// CONNECT was not 2xx).</summary>
        ProxyConnect = 32,
    }

    // --- exceptions ---------------------------------------------------------------------------

    /// <summary>
    /// Base class of every error the library reports. It is a System.Net.WebException, so code
    /// that catches WebException keeps working, and <see cref="WebException.Status"/> tells the
    /// kind of failure in .NET's terms (ConnectFailure, NameResolutionFailure, Timeout,
    /// TrustFailure...; see <see cref="StatusOf"/>). <see cref="NativeCode"/> is the exact
    /// sp_result code, Message the detailed message of sp_last_error() (or the code's fixed
    /// text), and <see cref="RequestMayHaveBeenSent"/> whether the failed request may have
    /// reached the server (use it to decide whether a non-idempotent request may be resent).
    /// <see cref="WebException.Response"/> is always null: an HTTP error status is a Response,
    /// not an exception, so Status is never ProtocolError.
    /// </summary>
    public class ServicePointException : WebException
    {
        public ServicePointException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(message, inner, StatusOf(code, requestSent, function), null)
        {
            NativeCode = code;
            RequestMayHaveBeenSent = requestSent;
            Function = function;
        }

        /// <summary>The sp_result code, e.g. ErrorCode.Connect (9).</summary>
        public ErrorCode NativeCode { get; private set; }

        /// <summary>Old name of <see cref="NativeCode"/>.</summary>
        [Obsolete("Use NativeCode (and Status for the kind of failure).")]
        public ErrorCode Code
        {
            get { return NativeCode; }
        }

        /// <summary>True if the failed request may have reached the server
        /// (sp_last_error_request_sent()): false means it certainly did not, so even a
        /// non-idempotent request may be sent again.</summary>
        public bool RequestMayHaveBeenSent { get; private set; }

        /// <summary>Old name of <see cref="RequestMayHaveBeenSent"/>.</summary>
        [Obsolete("Use RequestMayHaveBeenSent.")]
        public bool RequestSent
        {
            get { return RequestMayHaveBeenSent; }
        }

        /// <summary>Name of the C function that failed, when known.</summary>
        public string Function { get; private set; }

        /// <summary>
        /// The WebExceptionStatus of a native code. <paramref name="function"/> tells the phase:
        /// "sp_response_read"/"sp_response_read_all" is the body, anything else the request.
        /// <list type="bullet">
        /// <item>Dns: NameResolutionFailure. Connect: ConnectFailure.</item>
        /// <item>ConnectTimeout, QueueTimeout, ResponseTimeout, ReadTimeout: Timeout.</item>
        /// <item>TlsCertificate, TlsUnknownIssuer, TlsCertificateExpired, TlsHostnameMismatch:
        /// TrustFailure. TlsHandshake, TlsNotTls: SecureChannelFailure.</item>
        /// <item>Protocol: ServerProtocolViolation.</item>
        /// <item>ConnectionClosed: KeepAliveFailure while sending the request if it was certainly
        /// not sent (a kept-alive connection the server had closed), else ConnectionClosed.</item>
        /// <item>ConnectionReset, Io: SendFailure while sending the request if it was certainly
        /// not sent, else ReceiveFailure.</item>
        /// <item>BodySource: SendFailure. Canceled, ManagerClosed: RequestCanceled.</item>
        /// <item>ProxyAuthenticationRequired, ProxyConnect: RequestProhibitedByProxy.</item>
        /// <item>Ok: Success. Every other code (argument, handle, URL and internal errors):
        /// UnknownError.</item>
        /// </list>
        /// </summary>
        public static WebExceptionStatus StatusOf(ErrorCode code, bool requestMayHaveBeenSent, string function)
        {
            bool body = function == "sp_response_read" || function == "sp_response_read_all";
            switch (code)
            {
                case ErrorCode.Ok: return WebExceptionStatus.Success;
                case ErrorCode.Dns: return WebExceptionStatus.NameResolutionFailure;
                case ErrorCode.Connect: return WebExceptionStatus.ConnectFailure;
                case ErrorCode.ConnectTimeout:
                case ErrorCode.QueueTimeout:
                case ErrorCode.ResponseTimeout:
                case ErrorCode.ReadTimeout:
                    return WebExceptionStatus.Timeout;
                case ErrorCode.TlsCertificate:
                case ErrorCode.TlsUnknownIssuer:
                case ErrorCode.TlsCertificateExpired:
                case ErrorCode.TlsHostnameMismatch:
                    return WebExceptionStatus.TrustFailure;
                case ErrorCode.TlsHandshake:
                case ErrorCode.TlsNotTls:
                    return WebExceptionStatus.SecureChannelFailure;
                case ErrorCode.Protocol: return WebExceptionStatus.ServerProtocolViolation;
                case ErrorCode.ConnectionClosed:
                    return !body && !requestMayHaveBeenSent ? WebExceptionStatus.KeepAliveFailure : WebExceptionStatus.ConnectionClosed;
                case ErrorCode.ConnectionReset:
                case ErrorCode.Io:
                    return !body && !requestMayHaveBeenSent ? WebExceptionStatus.SendFailure : WebExceptionStatus.ReceiveFailure;
                case ErrorCode.BodySource: return WebExceptionStatus.SendFailure;
                case ErrorCode.ProxyAuthenticationRequired:
                case ErrorCode.ProxyConnect:
                    return WebExceptionStatus.RequestProhibitedByProxy;
                case ErrorCode.Canceled:
                case ErrorCode.ManagerClosed:
                    return WebExceptionStatus.RequestCanceled;
                default: return WebExceptionStatus.UnknownError;
            }
        }

        /// <summary>The fixed English text of a code (sp_strerror).</summary>
        public static string StrError(ErrorCode code)
        {
            return Native.PtrToString(Native.sp_strerror((int)code));
        }

        /// <summary>The exception of the class matching <paramref name="code"/> (the base class for
        /// codes this binding does not know).</summary>
        public static ServicePointException Create(ErrorCode code, string message, bool requestSent, string function, Exception inner)
        {
            switch (code)
            {
                case ErrorCode.InvalidArgument: return new InvalidArgumentException(code, message, requestSent, function, inner);
                case ErrorCode.NullPointer: return new NullPointerException(code, message, requestSent, function, inner);
                case ErrorCode.InvalidUtf8: return new InvalidUtf8Exception(code, message, requestSent, function, inner);
                case ErrorCode.OutOfRange: return new OutOfRangeException(code, message, requestSent, function, inner);
                case ErrorCode.InvalidHandle: return new InvalidHandleException(code, message, requestSent, function, inner);
                case ErrorCode.InvalidUrl: return new InvalidUrlException(code, message, requestSent, function, inner);
                case ErrorCode.UnsupportedScheme: return new UnsupportedSchemeException(code, message, requestSent, function, inner);
                case ErrorCode.Dns: return new DnsException(code, message, requestSent, function, inner);
                case ErrorCode.Connect: return new ConnectException(code, message, requestSent, function, inner);
                case ErrorCode.ConnectTimeout: return new ConnectTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.QueueTimeout: return new QueueTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.ResponseTimeout: return new ResponseTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.ReadTimeout: return new ReadTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.TlsCertificate: return new TlsCertificateException(code, message, requestSent, function, inner);
                case ErrorCode.TlsHandshake: return new TlsHandshakeException(code, message, requestSent, function, inner);
                case ErrorCode.Protocol: return new ProtocolException(code, message, requestSent, function, inner);
                case ErrorCode.ConnectionClosed: return new ConnectionClosedException(code, message, requestSent, function, inner);
                case ErrorCode.Io: return new NetworkIOException(code, message, requestSent, function, inner);
                case ErrorCode.TooManyServicePoints: return new TooManyServicePointsException(code, message, requestSent, function, inner);
                case ErrorCode.Canceled: return new CanceledException(code, message, requestSent, function, inner);
                case ErrorCode.WrongThread: return new WrongThreadException(code, message, requestSent, function, inner);
                case ErrorCode.Panic: return new PanicException(code, message, requestSent, function, inner);
                case ErrorCode.NotFound: return new NotFoundException(code, message, requestSent, function, inner);
                case ErrorCode.ManagerClosed: return new ManagerClosedException(code, message, requestSent, function, inner);
                case ErrorCode.BodySource: return new BodySourceException(code, message, requestSent, function, inner);
                case ErrorCode.TlsUnknownIssuer: return new TlsUnknownIssuerException(code, message, requestSent, function, inner);
                case ErrorCode.TlsCertificateExpired: return new TlsCertificateExpiredException(code, message, requestSent, function, inner);
                case ErrorCode.TlsHostnameMismatch: return new TlsHostnameMismatchException(code, message, requestSent, function, inner);
                case ErrorCode.TlsNotTls: return new TlsNotTlsException(code, message, requestSent, function, inner);
                case ErrorCode.ConnectionReset: return new ConnectionResetException(code, message, requestSent, function, inner);
                case ErrorCode.ProxyAuthenticationRequired: return new ProxyAuthenticationRequiredException(code, message, requestSent, function, inner);
                case ErrorCode.ProxyConnect: return new ProxyConnectException(code, message, requestSent, function, inner);
                default: return new ServicePointException(code, message, requestSent, function, inner);
            }
        }
    }

    /// <summary>SP_E_INVALID_ARGUMENT: an argument is not acceptable (e.g. a bad header name).</summary>
    public class InvalidArgumentException : ServicePointException
    {
        public InvalidArgumentException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_NULL_POINTER: a required pointer argument was NULL (a binding bug if seen).</summary>
    public class NullPointerException : ServicePointException
    {
        public NullPointerException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_INVALID_UTF8: a string argument is not valid UTF-8.</summary>
    public class InvalidUtf8Exception : ServicePointException
    {
        public InvalidUtf8Exception(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_OUT_OF_RANGE: a numeric setting is outside its valid range; nothing was changed.</summary>
    public class OutOfRangeException : ServicePointException
    {
        public OutOfRangeException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_INVALID_HANDLE: the handle is NULL, freed, of another kind, or never issued.</summary>
    public class InvalidHandleException : ServicePointException
    {
        public InvalidHandleException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_INVALID_URL: the URL cannot be parsed or has no host.</summary>
    public class InvalidUrlException : ServicePointException
    {
        public InvalidUrlException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_UNSUPPORTED_SCHEME: the URL's scheme is neither http nor https (or https
    /// without TLS support).</summary>
    public class UnsupportedSchemeException : ServicePointException
    {
        public UnsupportedSchemeException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_DNS: the host name could not be resolved.</summary>
    public class DnsException : ServicePointException
    {
        public DnsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECT: the TCP connection could not be established (refused, unreachable).</summary>
    public class ConnectException : ServicePointException
    {
        public ConnectException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>Base of the four timeout errors.</summary>
    public class ServicePointTimeoutException : ServicePointException
    {
        public ServicePointTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECT_TIMEOUT: establishing the connection took longer than the timeout.</summary>
    public class ConnectTimeoutException : ServicePointTimeoutException
    {
        public ConnectTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_QUEUE_TIMEOUT: the request waited for a free connection (connection limit
    /// reached) longer than its timeout. The request was not sent.</summary>
    public class QueueTimeoutException : ServicePointTimeoutException
    {
        public QueueTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_RESPONSE_TIMEOUT: the response head did not arrive within the timeout.</summary>
    public class ResponseTimeoutException : ServicePointTimeoutException
    {
        public ResponseTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_READ_TIMEOUT: a body read did not complete within the read timeout.</summary>
    public class ReadTimeoutException : ServicePointTimeoutException
    {
        public ReadTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>Base of the TLS errors.</summary>
    public class TlsException : ServicePointException
    {
        public TlsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_CERTIFICATE: the server's TLS certificate was rejected.</summary>
    public class TlsCertificateException : TlsException
    {
        public TlsCertificateException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_HANDSHAKE: the TLS handshake failed.</summary>
    public class TlsHandshakeException : TlsException
    {
        public TlsHandshakeException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_UNKNOWN_ISSUER: the certificate was issued by an authority that is not trusted.</summary>
    public class TlsUnknownIssuerException : TlsCertificateException
    {
        public TlsUnknownIssuerException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_CERT_EXPIRED: the certificate has expired or is not valid yet.</summary>
    public class TlsCertificateExpiredException : TlsCertificateException
    {
        public TlsCertificateExpiredException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_HOSTNAME_MISMATCH: the certificate is not valid for the host name.</summary>
    public class TlsHostnameMismatchException : TlsCertificateException
    {
        public TlsHostnameMismatchException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_NOT_TLS: the server answered in plain HTTP (an http port used with https://).</summary>
    public class TlsNotTlsException : TlsHandshakeException
    {
        public TlsNotTlsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_PROTOCOL: the server sent something that is not valid HTTP/1.x or exceeds the limits.</summary>
    public class ProtocolException : ServicePointException
    {
        public ProtocolException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECTION_CLOSED: the connection closed before the response was complete.</summary>
    public class ConnectionClosedException : ServicePointException
    {
        public ConnectionClosedException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECTION_RESET: the server reset the connection (RST) before the response
    /// was complete. A ConnectionClosedException too (its code before ABI 2).</summary>
    public class ConnectionResetException : ConnectionClosedException
    {
        public ConnectionResetException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_IO: another socket error. (Not named IoException, to keep it apart from
    /// System.IO.IOException.)</summary>
    public class NetworkIOException : ServicePointException
    {
        public NetworkIOException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TOO_MANY_SERVICE_POINTS: the manager is at its max service points and none
    /// can be evicted.</summary>
    public class TooManyServicePointsException : ServicePointException
    {
        public TooManyServicePointsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CANCELED: the operation was canceled.</summary>
    public class CanceledException : ServicePointException
    {
        public CanceledException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_WRONG_THREAD: a blocking call was made from a library thread (a callback).</summary>
    public class WrongThreadException : ServicePointException
    {
        public WrongThreadException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_PANIC: an internal error (a Rust panic) was caught; the message has details.</summary>
    public class PanicException : ServicePointException
    {
        public PanicException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_NOT_FOUND: the looked-up item does not exist. The binding turns it into
    /// null for header and trailer lookups.</summary>
    public class NotFoundException : ServicePointException
    {
        public NotFoundException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_MANAGER_CLOSED: the service point's manager was disposed.</summary>
    public class ManagerClosedException : ServicePointException
    {
        public ManagerClosedException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_BODY_SOURCE: producing the streamed request body failed. When the body came
    /// from a Stream that threw, that exception is the InnerException.</summary>
    public class BodySourceException : ServicePointException
    {
        public BodySourceException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>Base of the errors of a proxy's answer to CONNECT (an https request through an
    /// http proxy); the message has the proxy's status line. Status RequestProhibitedByProxy.</summary>
    public class ProxyException : ServicePointException
    {
        public ProxyException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_PROXY_AUTH_REQUIRED: the proxy answered CONNECT with 407 (no credentials,
    /// or wrong ones). For plain http the proxy's 407 is the Response.</summary>
    public class ProxyAuthenticationRequiredException : ProxyException
    {
        public ProxyAuthenticationRequiredException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_PROXY_CONNECT: the proxy refused to open the tunnel.</summary>
    public class ProxyConnectException : ProxyException
    {
        public ProxyConnectException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }
}
