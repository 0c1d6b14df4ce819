// Compiled with the tests: typical code that imports both System.Net and Servicepoint must
// compile without any name being ambiguous (CS0104), including System.Net's own
// ServicePointManager and ServicePoint next to the binding's types.

using System;
using System.IO;
using System.Net;
using Servicepoint;

namespace BothNamespaces
{
    public static class Example
    {
        public static string Fetch(string url)
        {
            ServicePointManager.Expect100Continue = false;          // System.Net's
            ServicePoint systemPoint = ServicePointManager.FindServicePoint(new Uri(url));
            GC.KeepAlive(systemPoint);
            try
            {
                using (var manager = new HttpServicePointManager())
                using (HttpServicePoint point = manager.FindServicePoint(url))
                {
                    point.ConnectionLimit = 4;
                    var request = new HttpRequest(url) { Timeout = 10000 };
                    using (Response response = manager.GetResponse(request))
                    using (var reader = new StreamReader(response.GetResponseStream()))
                    {
                        if (response.StatusCode != HttpStatusCode.OK) return null;
                        return reader.ReadToEnd();
                    }
                }
            }
            catch (WebException e) when (e.Status == WebExceptionStatus.ConnectFailure)
            {
                return null;
            }
        }
    }
}
