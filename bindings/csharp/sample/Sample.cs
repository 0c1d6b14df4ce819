// A port of the .NET documentation's C++ example for HttpServicePoint.ConnectionLeaseTimeout
// ("ServicePointExample.PrintResponse") to the servicepoint binding:
//
//   mono Sample.exe http://127.0.0.1:8080/page
//
// It gets the service point that handles the URI's connections, sets its connection lease
// timeout to infinite, sends the request and prints the response through a StreamReader.
// Exit status: 0 on success, 1 if the request failed, 2 on a bad command line or URI.

using System;
using System.IO;
using System.Threading;
using Servicepoint;

namespace SystemNetExamples
{
    public static class ServicePointExample
    {
        // Pass in the name of the Web page to retrieve.
        public static int PrintResponse(string page)
        {
            // Create the request.
            Uri uri;
            try
            {
                uri = new Uri(page);
            }
            catch (UriFormatException ex)
            {
                Console.Error.WriteLine(ex.Message);
                return 2;
            }
            var request = new HttpRequest(uri);

            // The manager plays the role of the static System.Net.ServicePointManager.
            using (var manager = new HttpServicePointManager())
            // Get the service point that handles the request's socket connection.
            using (HttpServicePoint point = manager.FindServicePoint(uri))
            {
                // (point->ReceiveBufferSize = 2048 has no counterpart: the library sizes its
                // socket buffers itself.)

                // Set the connection lease timeout to infinite.
                point.ConnectionLeaseTimeout = Timeout.Infinite;

                // Send the request.
                using (Response response = manager.GetResponse(request))
                using (Stream responseStream = response.GetResponseStream())
                using (var streamReader = new StreamReader(responseStream))
                {
                    // Display the response.
                    Console.WriteLine(streamReader.ReadToEnd());
                }
            }
            return 0;
        }

        public static int Main(string[] args)
        {
            if (args.Length != 1)
            {
                Console.Error.WriteLine("usage: Sample.exe URL");
                return 2;
            }
            try
            {
                return PrintResponse(args[0]);
            }
            catch (ServicePointException ex)
            {
                Console.Error.WriteLine("error: {0} ({1}, code {2})", ex.Message, ex.Status, (int)ex.NativeCode);
                return 1;
            }
        }
    }
}
